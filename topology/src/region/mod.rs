//! Whole-region operations, the pure part: which topologies a region switch moves and to which
//! member (`select`), and what the region switch does next given how far each topology got
//! (`drive`). The hub object, its controller, the hooks' side effects and the CLI build on these;
//! see docs/region-switch.md.

pub mod drill;
pub mod drive;
pub mod select;

pub use drive::{
    Action, Entry, EntryState, Observation, OnHold, Phase, Progress, next_actions, resume_actions,
};
pub use select::{Choice, RegionSwitchRequest, SelectError, TopologyView, select};
