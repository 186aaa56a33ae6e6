//! A few sessions per thread, in front of the cookie store's shared cache.
//!
//! Why: a hit in the shared cache (moka) logs the read on a channel every
//! worker thread pushes to, pins a crossbeam epoch and runs the cache's
//! housekeeping now and then: about 1,400 instructions a request, and cache
//! lines that move between cores on every request. A hit here touches only
//! this thread's memory and the session's count.
//!
//! Owns: the slots, and which store filled each. Must not: decide whether a
//! session is valid. Only sessions the store opened and verified are put
//! here, under the very bytes that opened them, and the store checks expiry
//! and revocations on every load, hit or miss, as it does for its shared
//! cache. A slot filled by another store (another cookie secret after a
//! reload) never answers.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::session::Session;

/// Slots per thread: direct-mapped, so a busy worker keeps the sessions it
/// saw last (a browser's page load is tens of requests on one session).
const SLOTS: usize = 32;

/// Longer values (most chunked cookies) go to the shared cache only: the
/// values in the slots stay under 128 KiB a thread, and the sessions they
/// share with the shared cache about as much again.
const MAX_VALUE: usize = 4096;

const _: () = assert!(SLOTS.is_power_of_two() && SLOTS > 1);

/// One remembered session and the value that opened it.
struct Slot {
    store: u64,
    value: Box<[u8]>,
    session: Arc<Session>,
}

thread_local! {
    static FRONT: RefCell<[Option<Slot>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// A new store's identity: slots it did not fill never answer it.
pub(super) fn new_store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The slot for `value`: from its length and last eight bytes, the end of
/// a sealed value's AES-GCM tag (random from value to value). A client can
/// only move sessions it holds between slots, and a lost slot costs a
/// lookup in the shared cache, never an answer.
fn slot_of(value: &[u8]) -> usize {
    let mut tail = [0_u8; 8];
    let end = value.get(value.len().saturating_sub(8)..).unwrap_or(value);
    tail.get_mut(..end.len())
        .unwrap_or_default()
        .copy_from_slice(end);
    let h = (u64::from_le_bytes(tail) ^ value.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // the top bits, the best mixed: SLOTS is a power of two
    usize::try_from(h >> (64 - SLOTS.trailing_zeros())).unwrap_or(0) % SLOTS
}

/// The session `store` put here under exactly `value`. A slot another
/// store filled (one a reload replaced) is emptied on the way: its session
/// and tokens are not kept for a store that is gone.
pub(super) fn get(store: u64, value: &[u8]) -> Option<Arc<Session>> {
    FRONT
        .try_with(|f| {
            let mut f = f.try_borrow_mut().ok()?;
            let slot = f.get_mut(slot_of(value))?;
            let held = slot.as_ref()?;
            if held.store != store {
                *slot = None;
                return None;
            }
            (*held.value == *value).then(|| Arc::clone(&held.session))
        })
        .ok()
        .flatten()
}

/// Remembers `session`, opened and verified from `value` by `store`, in
/// place of what its slot held.
pub(super) fn put(store: u64, value: &[u8], session: &Arc<Session>) {
    if value.len() > MAX_VALUE {
        return;
    }
    // at thread exit there is nothing left to keep it for
    let _ = FRONT.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut()
            && let Some(slot) = f.get_mut(slot_of(value))
        {
            *slot = Some(Slot {
                store,
                value: value.into(),
                session: Arc::clone(session),
            });
        }
    });
}

/// Forgets what `store` put here under `value` (an expired session).
pub(super) fn remove(store: u64, value: &[u8]) {
    let _ = FRONT.try_with(|f| {
        if let Ok(mut f) = f.try_borrow_mut()
            && let Some(slot) = f.get_mut(slot_of(value))
            && slot
                .as_ref()
                .is_some_and(|s| s.store == store && *s.value == *value)
        {
            *slot = None;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(sub: &str) -> Arc<Session> {
        Arc::new(Session {
            id: crate::auth::session::SessionId::from_bytes([1; 16]),
            provider_sid: None,
            provider: None,
            issuer: "https://idp.example.com".into(),
            issued_at_ms: 1_000,
            secret: None,
            identity: crate::auth::identity::Identity {
                subject: sub.into(),
                ..crate::auth::identity::Identity::default()
            },
        })
    }

    #[test]
    fn only_the_store_and_the_exact_value_that_filled_a_slot_find_it() {
        let (a, b) = (new_store_id(), new_store_id());
        let value = b"sealed-value-0123456789".to_vec();
        let s = session("alice");
        put(a, &value, &s);
        assert!(get(a, &value).is_some_and(|got| Arc::ptr_eq(&got, &s)));
        // another store (another cookie secret) never gets it, and asking
        // empties the slot: the first store's session is not kept for it
        assert!(get(b, &value).is_none());
        assert!(get(a, &value).is_none());
        put(a, &value, &s);
        // nor does a value that differs anywhere, or is longer or shorter
        let mut first = value.clone();
        first[0] ^= 1;
        for other in [
            first,
            [value.as_slice(), b"x"].concat(),
            value[1..].to_vec(),
            value[..value.len() - 1].to_vec(),
        ] {
            assert!(get(a, &other).is_none());
        }
        // another thread has slots of its own
        std::thread::scope(|t| {
            t.spawn(|| assert!(get(a, &value).is_none()));
        });
        // removal by another store or value leaves it; its own removes it
        remove(b, &value);
        assert!(get(a, &value).is_some());
        remove(a, &value);
        assert!(get(a, &value).is_none());
    }

    #[test]
    fn values_too_long_are_not_kept_and_any_length_finds_a_slot() {
        let a = new_store_id();
        let long = vec![b'x'; MAX_VALUE + 1];
        put(a, &long, &session("alice"));
        assert!(get(a, &long).is_none());
        let longest = vec![b'x'; MAX_VALUE];
        put(a, &longest, &session("alice"));
        assert!(get(a, &longest).is_some());
        for len in 0..64 {
            assert!(slot_of(&vec![b'y'; len]) < SLOTS);
        }
        // the tail decides the slot: values differing there spread out
        let slots: std::collections::HashSet<usize> = (0..64_u8)
            .map(|i| slot_of(&[b"abcdefgh-".as_slice(), &[i; 8]].concat()))
            .collect();
        assert!(slots.len() > SLOTS / 2, "{slots:?}");
    }
}
