//! The saga's window over the log: the events read and not yet handled, so that messages are
//! handled independently of each other while the checkpoint stays safe.
//!
//! - Events of one message are handled one at a time, in log order (a message's cascade is a
//!   sequence); events of different messages at once.
//! - An event is handed out ([`Window::next_ready`]) only when every earlier event of its message
//!   is finished; a slow message holds up only itself.
//! - The checkpoint may move only past finished events: [`Window::advance`] gives the position of
//!   the longest finished prefix (the low watermark). A crash re-reads from there, and handling an
//!   event twice is safe (the aggregate sees its dispatch made and decides, never re-sends).

use chrono::{DateTime, Utc};
use hermes_infra::event_store::{Checkpoint, StoredEvent};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;
use uuid::Uuid;

/// One event in the window, by its sequence number (the order it was read in).
pub type Seq = u64;

#[derive(Default)]
pub struct Window {
    /// Every event read and not yet passed by the watermark, in log order, from `first_seq`.
    entries: VecDeque<Entry>,
    first_seq: Seq,
    /// The checkpoint of the last event the watermark passed (where the window started, at first).
    passed: Checkpoint,
    /// Per message, the events waiting behind the one being handled (or waiting to start).
    waiting: HashMap<Uuid, VecDeque<Seq>>,
    /// Messages with an event handed out and not finished.
    busy: HashMap<Uuid, Seq>,
    /// Messages whose next event can be handed out, in the order they became ready.
    ready: VecDeque<Uuid>,
    /// Messages whose event was given back to wait (its account is full), and until when, in
    /// that order (every wait is as long).
    deferred: VecDeque<(Instant, Uuid)>,
}

struct Entry {
    checkpoint: Checkpoint,
    stream_id: Uuid,
    /// Taken when handed out.
    event: Option<StoredEvent>,
    finished: bool,
}

impl Window {
    /// A window over the events after `checkpoint`.
    pub fn starting_after(checkpoint: Checkpoint) -> Self {
        Window {
            passed: checkpoint,
            ..Window::default()
        }
    }

    /// Events read and not yet passed by the watermark (finished or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Events handed out and not finished.
    pub fn in_flight(&self) -> usize {
        self.busy.len()
    }

    /// Adds the next event of the log; returns its sequence number.
    pub fn push(&mut self, event: StoredEvent) -> Seq {
        let seq = self.first_seq + self.entries.len() as Seq;
        let stream_id = event.stream_id;
        self.entries.push_back(Entry {
            checkpoint: event.checkpoint(),
            stream_id,
            event: Some(event),
            finished: false,
        });
        let queue = self.waiting.entry(stream_id).or_default();
        queue.push_back(seq);
        if queue.len() == 1 && !self.busy.contains_key(&stream_id) {
            self.ready.push_back(stream_id);
        }
        seq
    }

    /// Drops the events of these messages that are not handed out (waiting or deferred): counted
    /// finished here, left to whoever handles them next (the worker a Kafka partition went to).
    /// Events handed out are not touched. Returns the dropped events' sequence numbers.
    pub fn drop_waiting(&mut self, streams: &HashSet<Uuid>) -> Vec<Seq> {
        let mut dropped = Vec::new();
        for stream_id in streams {
            if let Some(queue) = self.waiting.remove(stream_id) {
                dropped.extend(queue);
            }
        }
        self.ready.retain(|s| !streams.contains(s));
        self.deferred.retain(|(_, s)| !streams.contains(s));
        for &seq in &dropped {
            let entry = self.entry_mut(seq);
            entry.event = None;
            entry.finished = true;
        }
        dropped
    }

    /// The next event that can be handled now (its message has nothing in flight), with the
    /// number to [`Window::finish`] it by.
    pub fn next_ready(&mut self) -> Option<(Seq, StoredEvent)> {
        let now = Instant::now();
        while self
            .deferred
            .front()
            .is_some_and(|(until, _)| *until <= now)
        {
            let (_, stream_id) = self.deferred.pop_front().expect("checked");
            self.ready.push_back(stream_id);
        }
        let stream_id = self.ready.pop_front()?;
        let queue = self
            .waiting
            .get_mut(&stream_id)
            .expect("a ready stream waits");
        let seq = queue.pop_front().expect("a ready stream has an event");
        if queue.is_empty() {
            self.waiting.remove(&stream_id);
        }
        self.busy.insert(stream_id, seq);
        let entry = self.entry_mut(seq);
        let event = entry.event.take().expect("handed out once");
        Some((seq, event))
    }

    /// Marks an event handed out by [`Window::next_ready`] as handled; the next event of its
    /// message becomes ready.
    pub fn finish(&mut self, seq: Seq) {
        let entry = self.entry_mut(seq);
        entry.finished = true;
        let stream_id = entry.stream_id;
        self.busy.remove(&stream_id);
        if self.waiting.contains_key(&stream_id) {
            self.ready.push_back(stream_id);
        }
    }

    /// Gives back an event handed out by [`Window::next_ready`], unhandled: it is handed out
    /// again, before the rest of its message, once `until` has passed.
    pub fn defer(&mut self, seq: Seq, event: StoredEvent, until: Instant) {
        let entry = self.entry_mut(seq);
        entry.event = Some(event);
        let stream_id = entry.stream_id;
        self.busy.remove(&stream_id);
        self.waiting.entry(stream_id).or_default().push_front(seq);
        self.deferred.push_back((until, stream_id));
    }

    /// Drops the finished prefix of the window; the checkpoint of its last event, if it moved.
    pub fn advance(&mut self) -> Option<Checkpoint> {
        let mut passed = None;
        while self.entries.front().is_some_and(|e| e.finished) {
            let entry = self.entries.pop_front().expect("checked");
            self.first_seq += 1;
            self.passed = entry.checkpoint;
            passed = Some(entry.checkpoint);
        }
        passed
    }

    /// Where waiting for a worker starts: every event up to this checkpoint is handled, being
    /// handled, or waits behind an earlier event of its own message; the event after it (if any
    /// was read) is ready and waits for a free worker. Everything read counts when nothing is
    /// ready.
    pub fn started_through(&self) -> Checkpoint {
        match self.oldest_ready() {
            Some(seq) if seq > self.first_seq => {
                self.entries[(seq - self.first_seq - 1) as usize].checkpoint
            }
            Some(_) => self.passed,
            None => self.entries.back().map_or(self.passed, |e| e.checkpoint),
        }
    }

    /// When the oldest event that waits for a free worker (ready, not handed out) was recorded.
    pub fn oldest_ready_recorded_at(&self) -> Option<DateTime<Utc>> {
        let index = usize::try_from(self.oldest_ready()? - self.first_seq).ok()?;
        Some(self.entries.get(index)?.event.as_ref()?.recorded_at)
    }

    /// The oldest event that waits for a free worker: the first waiting event of a ready message.
    fn oldest_ready(&self) -> Option<Seq> {
        self.ready
            .iter()
            .filter_map(|stream| self.waiting.get(stream)?.front())
            .min()
            .copied()
    }

    fn entry_mut(&mut self, seq: Seq) -> &mut Entry {
        let index = usize::try_from(seq - self.first_seq).expect("in the window");
        &mut self.entries[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use hermes_infra::event_store::StoredEvent;

    fn event(position: i64, stream: u128) -> StoredEvent {
        StoredEvent {
            position,
            tx_id: 1,
            event_id: Uuid::now_v7(),
            stream_id: Uuid::from_u128(stream),
            stream_type: "message".into(),
            stream_version: 1,
            tenant_id: Uuid::nil(),
            event_type: "StepStarted".into(),
            schema_version: 1,
            payload: serde_json::Value::Null,
            metadata: sqlx::types::Json(Default::default()),
            recorded_at: Utc::now(),
        }
    }

    fn positions(w: &mut Window) -> Vec<(i64, Seq)> {
        std::iter::from_fn(|| w.next_ready())
            .map(|(seq, e)| (e.position, seq))
            .collect()
    }

    #[test]
    fn messages_go_at_once_and_one_message_goes_in_order() {
        let mut w = Window::default();
        for (position, stream) in [(1, 1), (2, 2), (3, 1), (4, 3), (5, 1)] {
            w.push(event(position, stream));
        }
        // The first event of each message; message 1's later events wait.
        assert_eq!(positions(&mut w), vec![(1, 0), (2, 1), (4, 3)]);
        assert_eq!(w.in_flight(), 3);
        w.finish(0);
        assert_eq!(positions(&mut w), vec![(3, 2)]);
        w.finish(2);
        assert_eq!(positions(&mut w), vec![(5, 4)]);
    }

    #[test]
    fn the_checkpoint_moves_only_past_finished_events() {
        let mut w = Window::default();
        for (position, stream) in [(1, 1), (2, 2), (3, 3)] {
            w.push(event(position, stream));
        }
        let handed = positions(&mut w);
        assert_eq!(handed.len(), 3);
        // A slow first message: the others finish, the checkpoint waits for it.
        w.finish(1);
        w.finish(2);
        assert_eq!(w.advance(), None);
        w.finish(0);
        assert_eq!(w.advance().map(|c| c.position), Some(3));
        assert!(w.is_empty());
        // Sequence numbers go on after the window emptied.
        w.push(event(4, 1));
        assert_eq!(positions(&mut w), vec![(4, 3)]);
        w.finish(3);
        assert_eq!(w.advance().map(|c| c.position), Some(4));
    }

    #[test]
    fn waiting_for_a_worker_starts_at_the_oldest_ready_event() {
        let start = Checkpoint {
            tx_id: 1,
            position: 0,
        };
        let mut w = Window::starting_after(start);
        assert_eq!(w.started_through(), start, "nothing read");
        for (position, stream) in [(1, 1), (2, 1), (3, 2), (4, 3)] {
            w.push(event(position, stream));
        }
        assert_eq!(w.started_through(), start, "event 1 waits for a worker");
        // Only message 1 starts (as if one worker were free): event 2 waits behind it, which is
        // not waiting for a worker; event 3 is the oldest that does.
        let (seq, _) = w.next_ready().unwrap();
        assert_eq!(w.started_through().position, 2);
        // Everything started: everything read counts as started.
        while w.next_ready().is_some() {}
        assert_eq!(w.started_through().position, 4);
        w.finish(seq);
        // Event 2 is ready now, and it is the oldest waiting for a worker.
        assert_eq!(w.started_through().position, 1);
    }

    #[test]
    fn the_oldest_event_waiting_for_a_worker_is_the_oldest_ready_one() {
        let mut w = Window::default();
        assert_eq!(w.oldest_ready_recorded_at(), None, "nothing read");
        let recorded: Vec<_> = [(1, 1), (2, 1), (3, 2)]
            .into_iter()
            .map(|(position, stream)| {
                let mut e = event(position, stream);
                e.recorded_at = Utc::now() - chrono::Duration::seconds(10 - position);
                let at = e.recorded_at;
                w.push(e);
                at
            })
            .collect();
        assert_eq!(w.oldest_ready_recorded_at(), Some(recorded[0]));
        // Message 1 starts: event 2 waits behind it, not for a worker; event 3 does.
        let (seq, _) = w.next_ready().unwrap();
        assert_eq!(w.oldest_ready_recorded_at(), Some(recorded[2]));
        while w.next_ready().is_some() {}
        assert_eq!(w.oldest_ready_recorded_at(), None, "everything started");
        w.finish(seq);
        assert_eq!(w.oldest_ready_recorded_at(), Some(recorded[1]));
    }

    #[test]
    fn a_deferred_event_comes_back_first_once_its_wait_is_over() {
        let mut w = Window::default();
        w.push(event(1, 1));
        w.push(event(2, 1));
        w.push(event(3, 2));
        let (seq, e) = w.next_ready().unwrap();
        assert_eq!(e.position, 1);
        w.defer(
            seq,
            e,
            Instant::now() + std::time::Duration::from_secs(3600),
        );
        // Message 1 waits (its later event too); message 2 goes on.
        assert_eq!(positions(&mut w), vec![(3, 2)]);
        assert!(w.next_ready().is_none(), "message 1 waits out its deferral");
        w.deferred[0].0 = Instant::now();
        let (seq, e) = w.next_ready().unwrap();
        assert_eq!(
            (seq, e.position),
            (0, 1),
            "the deferred event, before event 2"
        );
        assert_eq!(w.advance(), None);
        w.finish(0);
        assert_eq!(positions(&mut w), vec![(2, 1)]);
    }

    #[test]
    fn dropping_a_message_leaves_its_event_in_flight_and_passes_the_rest() {
        let mut w = Window::default();
        w.push(event(1, 1));
        w.push(event(2, 1));
        w.push(event(3, 2));
        w.push(event(4, 3));
        let (first, _) = w.next_ready().unwrap();
        assert_eq!(first, 0, "message 1's first event is in flight");
        let dropped = w.drop_waiting(&HashSet::from([Uuid::from_u128(1), Uuid::from_u128(2)]));
        let mut sorted = dropped;
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            vec![1, 2],
            "message 1's waiting event and message 2's"
        );
        assert_eq!(positions(&mut w), vec![(4, 3)], "message 3 goes on");
        assert_eq!(w.advance(), None, "the event in flight holds the watermark");
        w.finish(first);
        w.finish(3);
        assert_eq!(w.advance().map(|c| c.position), Some(4));
        assert!(w.is_empty());
    }

    #[test]
    fn an_event_pushed_while_its_message_is_busy_waits_for_it() {
        let mut w = Window::default();
        w.push(event(1, 1));
        assert_eq!(positions(&mut w), vec![(1, 0)]);
        w.push(event(2, 1));
        assert_eq!(positions(&mut w), vec![], "message 1 is busy");
        w.finish(0);
        assert_eq!(positions(&mut w), vec![(2, 1)]);
        w.finish(1);
        assert_eq!(w.advance().map(|c| c.position), Some(2));
    }
}
