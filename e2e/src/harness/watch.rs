//! One object's updates as a test sees them: a watch that outlives the apiserver's hiccups.
//!
//! A test waits on a watch for as long as its own deadline says, and the watch must not end
//! earlier than that: the lab clients read with a 30 s timeout, so a quiet stretch, a frozen hub
//! or a restarted etcd ends a raw watch with an error. `kube::runtime::watcher` recovers from
//! such errors when polled again (re-list, re-watch); here the errors are printed and skipped,
//! with the crate's default backoff between attempts.

use futures::stream::BoxStream;
use futures::{StreamExt, future};
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Every applied version of the object `name` in `api`, until the stream is dropped.
pub fn updates<K>(api: Api<K>, name: &str) -> BoxStream<'static, K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let what = format!("{} {name}", K::kind(&()));
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .filter_map(move |item| {
            future::ready(match item {
                Ok(object) => Some(object),
                Err(error) => {
                    eprintln!("watch of {what}: {error} (retrying)");
                    None
                }
            })
        })
        .boxed()
}
