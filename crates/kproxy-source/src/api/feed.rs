//! Turns one kind's watcher events into source events: a (re)list is buffered and handed
//! over as one `Replace`, so the consumer never sees a partial list and keeps what it knows
//! until the new list is complete.

use super::kinds::{Watched, WatchedKind};
use crate::event::SourceEvent;
use kproxy_model::{KubeObject, ObjectKind, StoreEvent};
use kube::runtime::watcher::Event;

/// The list-in-progress and initial-sync state of one kind.
#[derive(Debug)]
pub(crate) struct KindFeed {
    kind: ObjectKind,
    listing: Vec<KubeObject>,
    synced: bool,
}

impl KindFeed {
    pub fn new(kind: ObjectKind) -> Self {
        KindFeed {
            kind,
            listing: Vec::new(),
            synced: false,
        }
    }

    /// Whether the event shows the API server answering with objects (resets the backoff).
    pub fn is_progress<K>(event: &Event<K>) -> bool {
        !matches!(event, Event::Init)
    }

    /// The source events for one watcher event (none while a list is being collected).
    pub fn on_event<K: WatchedKind>(&mut self, event: Event<Watched<K>>) -> Vec<SourceEvent> {
        match event {
            Event::Init => {
                self.listing.clear();
                Vec::new()
            }
            Event::InitApply(object) => {
                self.listing.push(object.into_object());
                Vec::new()
            }
            Event::InitDone => {
                let objects = std::mem::take(&mut self.listing);
                let mut events = vec![SourceEvent::Store(StoreEvent::Replace(self.kind, objects))];
                if !self.synced {
                    self.synced = true;
                    events.push(SourceEvent::Synced(self.kind));
                }
                events
            }
            Event::Apply(object) => {
                vec![SourceEvent::Store(StoreEvent::Apply(object.into_object()))]
            }
            Event::Delete(object) => {
                vec![SourceEvent::Store(StoreEvent::Delete(
                    object.into_object().object_ref(),
                ))]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kproxy_model::slim::{SlimMeta, SlimService};

    fn service(name: &str) -> Watched<SlimService> {
        Watched::new(SlimService {
            metadata: SlimMeta {
                name: name.into(),
                namespace: "ns".into(),
                resource_version: None,
            },
            ..SlimService::default()
        })
    }

    fn describe(events: &[SourceEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                SourceEvent::Store(StoreEvent::Replace(kind, objects)) => {
                    let names: Vec<String> = objects.iter().map(|o| o.object_ref().name).collect();
                    format!("replace {kind} {names:?}")
                }
                SourceEvent::Store(StoreEvent::Apply(o)) => format!("apply {}", o.object_ref()),
                SourceEvent::Store(StoreEvent::Delete(r)) => format!("delete {r}"),
                SourceEvent::Synced(kind) => format!("synced {kind}"),
                SourceEvent::Warning(w) => format!("warning {w}"),
            })
            .collect()
    }

    #[test]
    fn a_list_is_one_replace_and_the_first_one_marks_the_kind_synced() {
        let mut feed = KindFeed::new(ObjectKind::Service);
        let mut all = Vec::new();
        for event in [
            Event::Init,
            Event::InitApply(service("a")),
            Event::InitApply(service("b")),
            Event::InitDone,
        ] {
            all.extend(feed.on_event(event));
        }
        all.extend(feed.on_event(Event::Apply(service("c"))));
        all.extend(feed.on_event(Event::Delete(service("a"))));
        for event in [Event::Init, Event::InitApply(service("c")), Event::InitDone] {
            all.extend(feed.on_event(event));
        }
        assert_eq!(
            describe(&all),
            [
                r#"replace Service ["a", "b"]"#,
                "synced Service",
                "apply Service ns/c",
                "delete Service ns/a",
                r#"replace Service ["c"]"#,
            ]
        );
    }

    #[test]
    fn an_interrupted_list_starts_over() {
        let mut feed = KindFeed::new(ObjectKind::Service);
        assert!(feed
            .on_event(Event::<Watched<SlimService>>::Init)
            .is_empty());
        assert!(feed.on_event(Event::InitApply(service("stale"))).is_empty());
        feed.on_event(Event::<Watched<SlimService>>::Init);
        feed.on_event(Event::InitApply(service("fresh")));
        assert_eq!(
            describe(&feed.on_event(Event::<Watched<SlimService>>::InitDone))[0],
            r#"replace Service ["fresh"]"#
        );
    }
}
