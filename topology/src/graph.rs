//! The topology as a directed graph: members are nodes, and an edge `source → member` says the
//! member replicates from that source (the direction WAL flows). Used for reachability checks
//! and for the pictures `federator graph` draws (text, Graphviz dot, SVG).

use std::collections::HashMap;
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, EdgeRef};

use crate::cnpg::Role;
use crate::model::Topology;
use crate::observed::Observed;

/// One member in the picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The member Kubernetes cluster.
    pub cluster: String,
    pub primary: bool,
}

/// How an edge is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// The member replicates from this source.
    Follows,
    /// The primary's own `source`: unused until it is demoted (drawn dashed).
    Dormant,
}

/// Members and their replication edges.
#[derive(Clone, Debug)]
pub struct TopologyGraph {
    pub graph: DiGraph<Node, Edge>,
    index: HashMap<String, NodeIndex>,
    primary: Option<NodeIndex>,
    shape: &'static str,
}

impl TopologyGraph {
    /// The graph the shape wants for `primary`.
    pub fn desired(topology: &Topology, primary: &str) -> TopologyGraph {
        let sources = topology.desired_sources(primary);
        let edges = topology
            .names()
            .iter()
            .zip(sources)
            .filter_map(|(m, s)| Some((m.as_str(), s?)));
        Self::build(topology, Some(primary), edges)
    }

    /// The graph the members' Clusters actually describe (their `spec.replica.source`).
    pub fn observed(topology: &Topology, observed: &Observed) -> TopologyGraph {
        let edges = topology.names().iter().filter_map(|m| {
            let source = observed.get(m)?.spec_source()?;
            Some((m.as_str(), source.to_owned()))
        });
        // Only members count: a stray Cluster in the snapshot must not hide the primary.
        let mut primaries = topology
            .names()
            .iter()
            .filter(|m| observed.get(m).and_then(|o| o.role()) == Some(Role::Primary));
        let primary = match (primaries.next(), primaries.next()) {
            (Some(p), None) => Some(p.as_str()),
            _ => None,
        };
        Self::build(topology, primary, edges)
    }

    fn build<'a>(
        topology: &Topology,
        primary: Option<&str>,
        edges: impl Iterator<Item = (&'a str, String)>,
    ) -> TopologyGraph {
        let mut graph = DiGraph::with_capacity(topology.names().len(), topology.names().len());
        let mut index = HashMap::with_capacity(topology.names().len());
        for member in topology.members() {
            let node = graph.add_node(Node {
                name: member.name.clone(),
                cluster: member.cluster.clone(),
                primary: Some(member.name.as_str()) == primary,
            });
            index.insert(member.name.clone(), node);
        }
        for (member, source) in edges {
            if let (Some(&m), Some(&s)) = (index.get(member), index.get(source.as_str())) {
                let kind = if Some(member) == primary {
                    Edge::Dormant
                } else {
                    Edge::Follows
                };
                graph.add_edge(s, m, kind);
            }
        }
        let primary = primary.and_then(|p| index.get(p).copied());
        TopologyGraph {
            graph,
            index,
            primary,
            shape: topology.shape().name(),
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.graph[i])
    }

    /// Members that WAL from the primary never reaches by following `Follows` edges, in member
    /// order. Empty means every replica is fed, directly or through a chain.
    pub fn not_fed_by_primary(&self) -> Vec<&str> {
        let mut fed = vec![false; self.graph.node_count()];
        if let Some(primary) = self.primary {
            let live = petgraph::visit::EdgeFiltered::from_fn(&self.graph, |e| {
                *e.weight() == Edge::Follows
            });
            let mut bfs = Bfs::new(&live, primary);
            while let Some(n) = bfs.next(&live) {
                fed[n.index()] = true;
            }
        }
        self.graph
            .node_indices()
            .filter(|n| !fed[n.index()])
            .map(|n| self.graph[n].name.as_str())
            .collect()
    }

    fn followers(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut out: Vec<NodeIndex> = self
            .graph
            .edges_directed(node, Direction::Outgoing)
            .filter(|e| *e.weight() == Edge::Follows)
            .map(|e| e.target())
            .collect();
        out.sort_by_key(|n| n.index());
        out
    }

    fn label(&self, n: NodeIndex) -> String {
        let node = &self.graph[n];
        let role = if node.primary { "primary, " } else { "" };
        format!("{} ({role}{})", node.name, node.cluster)
    }

    /// An indented tree from the primary, following WAL.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} shape, {} members, primary {}\n",
            self.shape,
            self.graph.node_count(),
            self.primary
                .map_or("<none>".into(), |p| self.graph[p].name.clone())
        );
        let mut seen = vec![false; self.graph.node_count()];
        if let Some(primary) = self.primary {
            let _ = writeln!(out, "{}", self.label(primary));
            seen[primary.index()] = true;
            self.write_children(primary, "", &mut seen, &mut out);
            for e in self.graph.edges_directed(primary, Direction::Incoming) {
                if *e.weight() == Edge::Dormant {
                    let _ = writeln!(
                        out,
                        "({} follows {} again once demoted)",
                        self.graph[primary].name,
                        self.graph[e.source()].name
                    );
                }
            }
        }
        let detached: Vec<&str> = self
            .not_fed_by_primary()
            .into_iter()
            .filter(|n| Some(self.index[*n]) != self.primary)
            .collect();
        if !detached.is_empty() {
            let _ = writeln!(out, "not fed by the primary: {}", detached.join(", "));
        }
        out
    }

    fn write_children(&self, node: NodeIndex, indent: &str, seen: &mut [bool], out: &mut String) {
        let children: Vec<NodeIndex> = self
            .followers(node)
            .into_iter()
            .filter(|c| !seen[c.index()])
            .collect();
        for c in &children {
            seen[c.index()] = true;
        }
        for (i, &child) in children.iter().enumerate() {
            let last = i + 1 == children.len();
            let _ = writeln!(
                out,
                "{indent}{}{}",
                if last { "└── " } else { "├── " },
                self.label(child)
            );
            let deeper = format!("{indent}{}", if last { "    " } else { "│   " });
            self.write_children(child, &deeper, seen, out);
        }
    }

    /// Graphviz `dot` source.
    pub fn to_dot(&self) -> String {
        let mut out =
            String::from("digraph topology {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
        for n in self.graph.node_indices() {
            let node = &self.graph[n];
            let style = if node.primary {
                ", style=\"rounded,filled,bold\", fillcolor=\"#cfe8cf\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\\n{}\"{style}];",
                node.name, node.name, node.cluster
            );
        }
        for e in self.graph.edge_references() {
            let style = match e.weight() {
                Edge::Follows => "",
                Edge::Dormant => " [style=dashed, label=\"when demoted\"]",
            };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\"{style};",
                self.graph[e.source()].name,
                self.graph[e.target()].name
            );
        }
        out.push_str("}\n");
        out
    }

    /// A self-contained SVG: members on a circle (primary at the top), arrows in WAL direction.
    pub fn to_svg(&self) -> String {
        let n = self.graph.node_count().max(1);
        let radius = (60.0 * n as f64 / std::f64::consts::PI).max(120.0);
        let (box_w, box_h) = (150.0, 40.0);
        let size = 2.0 * radius + box_w + 40.0;
        let centre = size / 2.0;
        // Rotate so the primary sits at 12 o'clock.
        let offset = self.primary.map_or(0, |p| p.index());
        let position = |i: usize| {
            let slot = (i + n - offset) % n;
            let angle =
                2.0 * std::f64::consts::PI * slot as f64 / n as f64 - std::f64::consts::FRAC_PI_2;
            (centre + radius * angle.cos(), centre + radius * angle.sin())
        };
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size:.0}\" height=\"{size:.0}\" viewBox=\"0 0 {size:.0} {size:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\"/></marker></defs>\n"
        );
        for e in self.graph.edge_references() {
            let (x1, y1) = position(e.source().index());
            let (x2, y2) = position(e.target().index());
            let (x1, y1, x2, y2) = clip_to_boxes(x1, y1, x2, y2, box_w / 2.0, box_h / 2.0);
            let dash = if *e.weight() == Edge::Dormant {
                " stroke-dasharray=\"6 4\" stroke=\"#888\""
            } else {
                " stroke=\"#333\""
            };
            let _ = writeln!(
                out,
                "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke-width=\"1.5\"{dash} marker-end=\"url(#arrow)\"/>"
            );
        }
        for i in self.graph.node_indices() {
            let node = &self.graph[i];
            let (x, y) = position(i.index());
            let (fill, stroke) = if node.primary {
                ("#cfe8cf", "3")
            } else {
                ("#ffffff", "1")
            };
            let _ = writeln!(
                out,
                "<g><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{box_w}\" height=\"{box_h}\" rx=\"8\" fill=\"{fill}\" stroke=\"#333\" stroke-width=\"{stroke}\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"{}\">{}</text>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\" font-size=\"10\">{}</text></g>",
                x - box_w / 2.0,
                y - box_h / 2.0,
                y - 3.0,
                if node.primary { "bold" } else { "normal" },
                xml_escape(&node.name),
                y + 12.0,
                xml_escape(&node.cluster),
            );
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Shortens a segment between two box centres so it starts and ends at the boxes' borders.
fn clip_to_boxes(x1: f64, y1: f64, x2: f64, y2: f64, hw: f64, hh: f64) -> (f64, f64, f64, f64) {
    let (dx, dy) = (x2 - x1, y2 - y1);
    let t = |dx: f64, dy: f64| {
        let tx = if dx.abs() > f64::EPSILON {
            hw / dx.abs()
        } else {
            f64::INFINITY
        };
        let ty = if dy.abs() > f64::EPSILON {
            hh / dy.abs()
        } else {
            f64::INFINITY
        };
        tx.min(ty).min(0.5)
    };
    let k = t(dx, dy);
    (x1 + dx * k, y1 + dy * k, x2 - dx * k, y2 - dy * k)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifests;

    fn ring() -> (Topology, Observed) {
        let mut m = Manifests::default();
        m.add(
            "ring.yaml",
            include_str!("../../examples/ring-of-three.yaml"),
        )
        .unwrap();
        let topology = Topology::from_spec(&m.topologies[0].1.spec).unwrap();
        let clusters: Vec<_> = m.clusters.iter().map(|(_, c)| c.clone()).collect();
        (topology, Observed::from_clusters(&clusters))
    }

    #[test]
    fn ring_text_and_dot_follow_wal_from_the_primary() {
        let (topology, observed) = ring();
        let graph = TopologyGraph::observed(&topology, &observed);
        assert!(graph.not_fed_by_primary().is_empty());
        insta::assert_snapshot!(graph.to_text());
        insta::assert_snapshot!(graph.to_dot());
    }

    #[test]
    fn svg_has_one_box_per_member_and_one_arrow_per_edge() {
        let (topology, observed) = ring();
        let svg = TopologyGraph::observed(&topology, &observed).to_svg();
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<rect ").count(), 3);
        assert_eq!(svg.matches("<line ").count(), 3);
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            1,
            "the primary's dormant source"
        );
    }

    #[test]
    fn a_member_whose_source_leads_nowhere_is_not_fed() {
        let (topology, mut observed) = ring();
        let south = observed.members.get_mut("pg16-eu-south").unwrap();
        south.replica.as_mut().unwrap().source = "pg16-eu-south".into();
        let graph = TopologyGraph::observed(&topology, &observed);
        assert_eq!(graph.not_fed_by_primary(), ["pg16-eu-south"]);
    }
}
