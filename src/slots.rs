//! Connection slots that a newcomer can always get while anyone is idle: a fixed number of
//! connections, and when every slot is taken the oldest *idle* connection is closed to make
//! room, as Unbound and Knot Resolver do for DNS over TCP. Shared by the TCP DNS listener
//! ([`crate::server`]'s TCP) and the HTTP listener ([`crate::api`]).
//!
//! A connection is busy while it works on a request ([`Slot::busy`]) and idle otherwise
//! (waiting for, or still reading, its next request). Only idle connections are evicted, so
//! an answer being worked on is never lost; a client that holds many connections open and
//! quiet cannot keep a new client out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// The value of [`Occupant::busy`] once the connection has been evicted: no new work starts.
const EVICTED: usize = usize::MAX;

/// A fixed number of connection slots.
pub struct Slots {
    capacity: usize,
    /// Open connections by age (a counter that only grows): the first is the oldest.
    open: Mutex<BTreeMap<u64, Arc<Occupant>>>,
    next_id: AtomicU64,
}

/// What the slots know of one connection.
#[derive(Default)]
struct Occupant {
    /// Requests being worked on, or [`EVICTED`].
    busy: AtomicUsize,
    /// Cancelled when the connection is evicted.
    evicted: CancellationToken,
}

/// One connection's slot, given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    occupant: Arc<Occupant>,
}

/// Marks a connection busy until dropped.
pub struct Busy(Arc<Occupant>);

impl Slots {
    /// `capacity` slots (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Connections holding a slot.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// Whether more than three quarters of the slots are taken: connections should then not
    /// sit idle for long.
    pub fn under_pressure(&self) -> bool {
        self.open() * 4 > self.capacity * 3
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Occupant>>> {
        // Every update is one insertion or removal: a panic leaves nothing half-done.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, else the slot of the oldest idle connection,
    /// which is told to close ([`Slot::evicted`]). `None` when every connection is busy.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.capacity {
            // Oldest first. The swap makes the choice atomic with the connection's own
            // `busy`: an evicted connection cannot start new work, and a busy one is skipped.
            let idle = open.iter().find_map(|(&id, occupant)| {
                let claimed =
                    occupant
                        .busy
                        .compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire);
                claimed.is_ok().then_some(id)
            })?;
            if let Some(evicted) = open.remove(&idle) {
                evicted.evicted.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let occupant = Arc::new(Occupant::default());
        open.insert(id, occupant.clone());
        Some(Slot {
            slots: self.clone(),
            id,
            occupant,
        })
    }
}

impl Slot {
    /// Marks the connection busy until the returned guard is dropped; `None` once it has been
    /// evicted (it must close without starting anything).
    pub fn busy(&self) -> Option<Busy> {
        let busy = &self.occupant.busy;
        busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (count != EVICTED).then(|| count + 1)
        })
        .ok()?;
        Some(Busy(self.occupant.clone()))
    }

    /// Resolves once the connection has been evicted to make room for a newcomer.
    pub async fn evicted(&self) {
        self.occupant.evicted.cancelled().await;
    }

    /// The slots this one belongs to.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // An evicted connection's slot went to its successor already.
        let mut open = self.slots.lock();
        if open
            .get(&self.id)
            .is_some_and(|occupant| Arc::ptr_eq(occupant, &self.occupant))
        {
            open.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_evicted(slot: &Slot) -> bool {
        slot.occupant.evicted.is_cancelled()
    }

    #[test]
    fn a_newcomer_takes_the_slot_of_the_oldest_idle_connection() {
        let slots = Slots::new(3);
        let held: Vec<Slot> = (0..3).map(|_| slots.admit().expect("free slot")).collect();
        let _working = held[0].busy().expect("not evicted");
        let newcomer = slots.admit().expect("an idle connection makes room");
        assert!(!is_evicted(&held[0]), "busy: kept");
        assert!(is_evicted(&held[1]), "the oldest idle one goes");
        assert!(!is_evicted(&held[2]));
        assert!(
            held[1].busy().is_none(),
            "an evicted connection starts nothing"
        );
        assert_eq!(slots.open(), 3);
        drop(held);
        assert_eq!(slots.open(), 1, "only the newcomer is left");
        drop(newcomer);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn when_every_connection_is_busy_a_newcomer_is_turned_away() {
        let slots = Slots::new(2);
        let held: Vec<Slot> = (0..2).map(|_| slots.admit().unwrap()).collect();
        let working: Vec<Busy> = held.iter().map(|slot| slot.busy().unwrap()).collect();
        assert!(slots.admit().is_none());
        drop(working);
        assert!(slots.admit().is_some(), "idle again: evictable");
    }

    #[test]
    fn pressure_starts_above_three_quarters() {
        let slots = Slots::new(4);
        let held: Vec<Slot> = (0..3).map(|_| slots.admit().unwrap()).collect();
        assert!(!slots.under_pressure());
        let fourth = slots.admit().unwrap();
        assert!(slots.under_pressure());
        drop((held, fourth));
    }
}
