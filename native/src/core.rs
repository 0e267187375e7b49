//! The engine: `streams.engine.engine.Engine`'s semantics over compact state.
//!
//! Every method here mirrors one of `engine.py` (named in its doc comment) and must
//! stay bit for bit equal to it: the Python engine is the reference, and the tests
//! (`tests/unit/test_native*.py` and the engine suites run against
//! `streams.engine.native.NativeEngine`) hold the two together.
//!
//! State:
//!
//! * sellers: a slot vector of [`Seller`] (id, per-seller order table, window sums,
//!   flags, and a boxed [`Ext`] for the rarer state: messages, replies, held events,
//!   timers), found by id through one hash table of slot indexes;
//! * order records, in one [`Slab`]: `key length varint | key | header 6 B (applied
//!   22 bits, fact flags 14, presence 12) | purchased_at | the facts present |
//!   buyer_messages? | digest count varint | 6-byte digests` (see `encode_order`);
//!   each seller's table holds the u32 handles of its records;
//! * id and window sums: a slab record per seller, `id length | id | meta | lanes
//!   (3 B) | counts[window][lane]`
//!   in 1, 2 or 4-byte cells, lanes added as predicates are first counted.
//!
//! No day index: a day roll scans every record (once a UTC day on a live clock).
//! Timers, as in the Python engine, are a per-seller heap of (deadline, key hash)
//! and one global heap of wake-ups, which holds at most one live entry per seller
//! and time (a Python engine's duplicate wake-up is an empty `_wake`).

use crate::json::{decode, Event, Kind};
use crate::slab::Slab;
use crate::ts::US_PER_DAY;
use hashbrown::{HashMap, HashTable};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use xxhash_rust::xxh3::xxh3_64;

pub const NO_TIME: i64 = i64::MAX;
pub const NO_LATEST: i64 = i64::MIN;
const BASE_US: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z, a storage origin only

// fact flags (rules.py)
pub const HAS_ORDER: u32 = 1 << 0;
const ANY_CANCEL: u32 = 1 << 1;
const REFUNDED_F: u32 = 1 << 2;
const TRACKED_F: u32 = 1 << 3;
const FB_NEGATIVE: u32 = 1 << 4;
const ATOZ_OPEN: u32 = 1 << 5;
const CHARGEBACK_OPEN: u32 = 1 << 6;
const EXTENDED: u32 = 1 << 7;
const RETURNED_F: u32 = 1 << 8;
const INR_OPEN: u32 = 1 << 9;
const ATOZ_GRANTED: u32 = 1 << 10;
const CHARGEBACK_GRANTED: u32 = 1 << 11;
const INR_GRANTED: u32 = 1 << 12;
pub const RESPONSE_REC: u32 = 1 << 13;
const EXTENDED_V11: u32 = 1 << 14;
const FORMAT_V2: u32 = 1 << 15;
const STORAGE_FLAGS: u32 = EXTENDED | EXTENDED_V11 | FORMAT_V2;
const ANY_GRANTED: u32 = ATOZ_GRANTED | CHARGEBACK_GRANTED | INR_GRANTED;

// predicates (rules.py)
const ORDER: u32 = 1 << 0;
const PERFECT: u32 = 1 << 1;
const SHIPPED: u32 = 1 << 2;
const VALID_TRACKING: u32 = 1 << 3;
const LATE_SHIPMENT: u32 = 1 << 4;
const DEFECT: u32 = 1 << 5;
const NEGATIVE_FEEDBACK: u32 = 1 << 6;
const REFUNDED: u32 = 1 << 7;
const BUYER_MESSAGE: u32 = 1 << 8;
const SELLER_CANCELLATION: u32 = 1 << 9;
const PRE_FULFILLMENT_CANCELLATION: u32 = 1 << 10;
const A_TO_Z_CLAIM: u32 = 1 << 11;
const CHARGEBACK: u32 = 1 << 12;
const DELIVERY_DUE: u32 = 1 << 13;
const ON_TIME_DELIVERY: u32 = 1 << 14;
const RETURNED: u32 = 1 << 15;
const ITEM_NOT_RECEIVED: u32 = 1 << 16;
const CLAIM_GRANTED: u32 = 1 << 17;
const TRANSACTION_DEFECT: u32 = 1 << 18;
const RESPONSE_EXPECTED: u32 = 1 << 19;
const RESPONSE_DUE: u32 = 1 << 20;
const RESPONDED_ON_TIME: u32 = 1 << 21;
pub const N_PREDICATES: usize = 22;
const COMMON_LANES: u32 =
    ORDER | PERFECT | SHIPPED | VALID_TRACKING | DELIVERY_DUE | ON_TIME_DELIVERY;
const DEFECT_CAUSES: u32 = NEGATIVE_FEEDBACK | A_TO_Z_CLAIM | CHARGEBACK;
const IMPERFECT_CAUSES: u32 =
    DEFECT_CAUSES | SELLER_CANCELLATION | LATE_SHIPMENT | REFUNDED | BUYER_MESSAGE;

// outcome codes (native.py maps them to Outcome or to the exception to raise)
pub const APPLIED: u8 = 0;
pub const PENDING: u8 = 1;
pub const DUPLICATE: u8 = 2;
pub const HELD: u8 = 3;
pub const EXPIRED: u8 = 4;
pub const INVALID: u8 = 5;
pub const CONFLICT: u8 = 6;
pub const TOO_FAR: u8 = 7;
/// Not decided here (see json::P::unsure): the caller decodes with decode_event and
/// applies the event it gets; the state is unchanged.
pub const UNSURE: u8 = 8;

const NONE: u32 = u32::MAX;
pub const RESPONSE_KEY: u8 = 0xFF;

/// An order's facts, unpacked (rules.py's field list; DAY is purchased_at's day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    pub ship_by: i64,
    pub first_ship: i64,
    pub flags: u32,
    pub applied: u32,
    pub first_seller_cancel: i64,
    pub feedback_at: i64,
    pub a_to_z_at: i64,
    pub chargeback_at: i64,
    pub buyer_messages: u32,
    pub deliver_by: i64,
    pub last_delivery: i64,
    pub inr_at: i64,
    pub purchased_at: i64,
}

impl Fields {
    /// orders.new_fields
    #[inline]
    pub fn new(anchor_day: i64) -> Self {
        Fields {
            ship_by: 0,
            first_ship: NO_TIME,
            flags: 0,
            applied: 0,
            first_seller_cancel: NO_TIME,
            feedback_at: NO_LATEST,
            a_to_z_at: NO_LATEST,
            chargeback_at: NO_LATEST,
            buyer_messages: 0,
            deliver_by: NO_TIME,
            last_delivery: NO_LATEST,
            inr_at: NO_LATEST,
            purchased_at: anchor_day * US_PER_DAY,
        }
    }
    #[inline]
    pub fn day(&self) -> i64 {
        self.purchased_at.div_euclid(US_PER_DAY)
    }
}

/// rules.evaluate, bit for bit.
#[inline]
pub fn evaluate(f: &Fields, now: i64) -> u32 {
    let flags = f.flags;
    if flags & HAS_ORDER == 0 {
        if flags & RESPONSE_REC != 0 {
            // _evaluate_response (RESPONSE_DEADLINE = ship_by, FIRST_REPLY = first_ship)
            let mut mask = RESPONSE_EXPECTED;
            if f.first_ship != NO_TIME {
                mask |= RESPONSE_DUE;
                if f.first_ship <= f.ship_by {
                    mask |= RESPONDED_ON_TIME;
                }
            } else if f.ship_by < now {
                mask |= RESPONSE_DUE;
            }
            return mask;
        }
        return 0;
    }
    let mut mask = ORDER;
    if flags & FB_NEGATIVE != 0 {
        mask |= NEGATIVE_FEEDBACK;
    }
    if flags & ATOZ_OPEN != 0 {
        mask |= A_TO_Z_CLAIM;
    }
    if flags & CHARGEBACK_OPEN != 0 {
        mask |= CHARGEBACK;
    }
    let first_ship = f.first_ship;
    if f.first_seller_cancel != NO_TIME {
        mask |= SELLER_CANCELLATION;
        if f.first_seller_cancel < first_ship {
            mask |= PRE_FULFILLMENT_CANCELLATION;
        }
    }
    if first_ship != NO_TIME {
        mask |= SHIPPED;
        if flags & TRACKED_F != 0 {
            mask |= VALID_TRACKING;
        }
        if first_ship > f.ship_by {
            mask |= LATE_SHIPMENT;
        }
    } else if f.ship_by < now && flags & ANY_CANCEL == 0 {
        mask |= LATE_SHIPMENT;
    }
    if flags & REFUNDED_F != 0 {
        mask |= REFUNDED;
    }
    if f.buyer_messages != 0 {
        mask |= BUYER_MESSAGE;
    }
    if mask & DEFECT_CAUSES != 0 {
        mask |= DEFECT;
    }
    if mask & IMPERFECT_CAUSES == 0 {
        mask |= PERFECT;
    }
    if flags & RETURNED_F != 0 {
        mask |= RETURNED;
    }
    if flags & INR_OPEN != 0 {
        mask |= ITEM_NOT_RECEIVED;
    }
    if flags & ANY_GRANTED != 0 {
        mask |= CLAIM_GRANTED | TRANSACTION_DEFECT;
    } else if mask & SELLER_CANCELLATION != 0 {
        mask |= TRANSACTION_DEFECT;
    }
    let deliver_by = f.deliver_by;
    if deliver_by != NO_TIME && flags & TRACKED_F != 0 && flags & ANY_CANCEL == 0 {
        let delivered = f.last_delivery;
        if delivered != NO_LATEST {
            mask |= DELIVERY_DUE;
            if delivered <= deliver_by {
                mask |= ON_TIME_DELIVERY;
            }
        } else if deliver_by < now {
            mask |= DELIVERY_DUE;
        }
    }
    mask
}

/// rules.deadlines: (up to two) instants after which evaluate changes by itself.
#[inline]
pub fn deadlines(f: &Fields) -> ([i64; 2], usize) {
    let flags = f.flags;
    let mut out = [0i64; 2];
    let mut n = 0;
    if flags & RESPONSE_REC != 0 {
        if f.first_ship == NO_TIME {
            out[0] = f.ship_by;
            n = 1;
        }
        return (out, n);
    }
    if flags & HAS_ORDER == 0 || flags & ANY_CANCEL != 0 {
        return (out, 0);
    }
    if f.first_ship == NO_TIME {
        out[n] = f.ship_by;
        n += 1;
    }
    if f.deliver_by != NO_TIME && flags & TRACKED_F != 0 && f.last_delivery == NO_LATEST {
        out[n] = f.deliver_by;
        n += 1;
    }
    (out, n)
}

// --- the Python record format (orders.pack / orders.unpack) -----------------------

/// orders.pack: the record in the Python engine's layout (persistence, readers).
pub fn py_pack(f: &Fields, digests: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(90 + digests.len());
    let at = f.purchased_at;
    let low = (at & 0xFFFF_FFFF) as u32;
    let high = (at >> 32) as i32;
    let flags = (f.flags & !(EXTENDED | EXTENDED_V11)) | FORMAT_V2;
    let short = f.first_seller_cancel == NO_TIME
        && f.feedback_at == NO_LATEST
        && f.a_to_z_at == NO_LATEST
        && f.chargeback_at == NO_LATEST
        && f.buyer_messages == 0;
    let v11 = f.deliver_by != NO_TIME || f.last_delivery != NO_LATEST || f.inr_at != NO_LATEST;
    let flags = flags | if v11 { EXTENDED_V11 } else { 0 } | if short { 0 } else { EXTENDED };
    out.extend_from_slice(&f.ship_by.to_le_bytes());
    out.extend_from_slice(&f.first_ship.to_le_bytes());
    out.extend_from_slice(&low.to_le_bytes());
    out.extend_from_slice(&(flags as u16).to_le_bytes());
    out.extend_from_slice(&f.applied.to_le_bytes());
    out.extend_from_slice(&high.to_le_bytes());
    if !short {
        out.extend_from_slice(&f.first_seller_cancel.to_le_bytes());
        out.extend_from_slice(&f.feedback_at.to_le_bytes());
        out.extend_from_slice(&f.a_to_z_at.to_le_bytes());
        out.extend_from_slice(&f.chargeback_at.to_le_bytes());
        out.extend_from_slice(&f.buyer_messages.to_le_bytes());
    }
    if v11 {
        out.extend_from_slice(&f.deliver_by.to_le_bytes());
        out.extend_from_slice(&f.last_delivery.to_le_bytes());
        out.extend_from_slice(&f.inr_at.to_le_bytes());
    }
    out.extend_from_slice(digests);
    out
}

fn rd_i64(b: &[u8], o: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}
fn rd_u32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// orders.unpack of a current-format record (v1 ones are migrated in Python first):
/// the fields (storage flags dropped) and the offset of the digests.
pub fn py_unpack(r: &[u8]) -> Option<(Fields, usize)> {
    let mut f = Fields::new(0);
    f.ship_by = rd_i64(r, 0)?;
    f.first_ship = rd_i64(r, 8)?;
    let low = rd_u32(r, 16)? as i64;
    let flags = u16::from_le_bytes(r.get(20..22)?.try_into().ok()?) as u32;
    f.applied = rd_u32(r, 22)?;
    let high = rd_u32(r, 26)? as i32 as i64;
    f.purchased_at = high << 32 | low;
    f.flags = flags & !STORAGE_FLAGS;
    let mut o = 30;
    if flags & EXTENDED != 0 {
        f.first_seller_cancel = rd_i64(r, o)?;
        f.feedback_at = rd_i64(r, o + 8)?;
        f.a_to_z_at = rd_i64(r, o + 16)?;
        f.chargeback_at = rd_i64(r, o + 24)?;
        f.buyer_messages = rd_u32(r, o + 32)?;
        o += 36;
    }
    if flags & EXTENDED_V11 != 0 {
        f.deliver_by = rd_i64(r, o)?;
        f.last_delivery = rd_i64(r, o + 8)?;
        f.inr_at = rd_i64(r, o + 16)?;
        o += 24;
    }
    if o > r.len() || (r.len() - o) % 6 != 0 {
        return None;
    }
    Some((f, o))
}

// --- varints ---------------------------------------------------------------------

#[inline(always)]
fn put_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline(always)]
fn get_var(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let c = b[*i];
        *i += 1;
        v |= ((c & 0x7F) as u64) << shift;
        if c < 0x80 {
            return v;
        }
        shift += 7;
    }
}

#[inline(always)]
fn var_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[inline(always)]
fn zz(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline(always)]
fn unzz(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

const SCALES: [i64; 4] = [1, 1_000, 1_000_000, 3_600_000_000];

/// An exact time difference: zigzag of d / scale, scale code in the low 2 bits.
/// Differences are taken with wrapping arithmetic (far-apart sentinels and years
/// 1000..9998 stay exact: the decoder adds back with the same wrapping).
#[inline(always)]
fn t_code(d: i64) -> u64 {
    let s = if d % SCALES[3] == 0 {
        3
    } else if d % SCALES[2] == 0 {
        2
    } else if d % SCALES[1] == 0 {
        1
    } else {
        0
    };
    zz(d / SCALES[s]) << 2 | s as u64
}

#[inline(always)]
fn get_t(b: &[u8], i: &mut usize) -> i64 {
    let c = get_var(b, i);
    unzz(c >> 2).wrapping_mul(SCALES[(c & 3) as usize])
}

#[inline(always)]
fn put_time(out: &mut Vec<u8>, v: i64, base: i64) {
    // A difference that would overflow the zigzag's range (only for instants
    // that far apart, never met) is stored against 0 with scale 0 after a marker:
    // kept exact either way.
    let d = v.wrapping_sub(base);
    if (d >= 0) == (v >= base) && d.unsigned_abs() < (1u64 << 61) {
        put_var(out, t_code(d));
    } else {
        // scale code 0 with the top zigzag bit: never produced by t_code for small d
        put_var(out, u64::MAX);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[inline(always)]
fn get_time(b: &[u8], i: &mut usize, base: i64) -> i64 {
    let start = *i;
    let c = get_var(b, i);
    if c == u64::MAX {
        let v = i64::from_le_bytes(b[*i..*i + 8].try_into().unwrap());
        *i += 8;
        return v;
    }
    *i = start;
    base.wrapping_add(get_t(b, i))
}

#[inline(always)]
pub fn digest48(event_id: &[u8]) -> [u8; 6] {
    // BLAKE2b with a 6-byte digest (hashlib.blake2b(id, digest_size=6)): the
    // output size is a parameter of the hash, not a truncation.
    let h = blake2b_simd::Params::new().hash_length(6).hash(event_id);
    let mut out = [0u8; 6];
    out.copy_from_slice(h.as_bytes());
    out
}

#[inline(always)]
fn has_digest(digests: &[u8], d: &[u8; 6]) -> bool {
    digests.chunks_exact(6).any(|c| c == d)
}

#[inline(always)]
fn khash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// (key, offset after it) of a keyed record.
#[inline(always)]
fn rec_key(b: &[u8]) -> (&[u8], usize) {
    let mut i = 0;
    let n = get_var(b, &mut i) as usize;
    (&b[i..i + n], i + n)
}

// presence bits of an order record's optional fields
const P_SHIP_BY: u32 = 1 << 0;
const P_FIRST_SHIP: u32 = 1 << 1;
const P_CANCEL: u32 = 1 << 2;
const P_FEEDBACK: u32 = 1 << 3;
const P_ATOZ: u32 = 1 << 4;
const P_CHARGEBACK: u32 = 1 << 5;
const P_DELIVER_BY: u32 = 1 << 6;
const P_DELIVERY: u32 = 1 << 7;
const P_INR: u32 = 1 << 8;
const P_MSGS: u32 = 1 << 9;

/// Decode an order record's payload (after the key): fields, digests offset, count.
#[inline(always)]
fn decode_order(b: &[u8], mut i: usize) -> (Fields, usize, usize) {
    let mut h = [0u8; 8];
    h[..6].copy_from_slice(&b[i..i + 6]);
    let h = u64::from_le_bytes(h);
    i += 6;
    let applied = (h & 0x3F_FFFF) as u32;
    let flags = ((h >> 22) & 0x3FFF) as u32;
    let present = ((h >> 36) & 0xFFF) as u32;
    let at = get_time(b, &mut i, BASE_US);
    let mut f = Fields::new(0);
    f.applied = applied;
    f.flags = flags;
    f.purchased_at = at;
    if present != 0 {
        if present & P_SHIP_BY != 0 {
            f.ship_by = get_time(b, &mut i, at);
        }
        if present & P_FIRST_SHIP != 0 {
            f.first_ship = get_time(b, &mut i, at);
        }
        if present & P_CANCEL != 0 {
            f.first_seller_cancel = get_time(b, &mut i, at);
        }
        if present & P_FEEDBACK != 0 {
            f.feedback_at = get_time(b, &mut i, at);
        }
        if present & P_ATOZ != 0 {
            f.a_to_z_at = get_time(b, &mut i, at);
        }
        if present & P_CHARGEBACK != 0 {
            f.chargeback_at = get_time(b, &mut i, at);
        }
        if present & P_DELIVER_BY != 0 {
            f.deliver_by = get_time(b, &mut i, at);
        }
        if present & P_DELIVERY != 0 {
            f.last_delivery = get_time(b, &mut i, at);
        }
        if present & P_INR != 0 {
            f.inr_at = get_time(b, &mut i, at);
        }
        if present & P_MSGS != 0 {
            f.buyer_messages = get_var(b, &mut i) as u32;
        }
    }
    let n = get_var(b, &mut i) as usize;
    (f, i, n)
}

/// (day, flags, applied) of an order record, from its header and purchase instant.
#[inline(always)]
fn order_head(b: &[u8]) -> (i64, u32, u32) {
    let (_, mut i) = rec_key(b);
    let mut h = [0u8; 8];
    h[..6].copy_from_slice(&b[i..i + 6]);
    let h = u64::from_le_bytes(h);
    i += 6;
    let at = get_time(b, &mut i, BASE_US);
    (at.div_euclid(US_PER_DAY), ((h >> 22) & 0x3FFF) as u32, (h & 0x3F_FFFF) as u32)
}

#[inline(always)]
fn encode_order(out: &mut Vec<u8>, f: &Fields, ndigests: usize) {
    let at = f.purchased_at;
    let opt = [
        (f.ship_by != 0, P_SHIP_BY, f.ship_by),
        (f.first_ship != NO_TIME, P_FIRST_SHIP, f.first_ship),
        (f.first_seller_cancel != NO_TIME, P_CANCEL, f.first_seller_cancel),
        (f.feedback_at != NO_LATEST, P_FEEDBACK, f.feedback_at),
        (f.a_to_z_at != NO_LATEST, P_ATOZ, f.a_to_z_at),
        (f.chargeback_at != NO_LATEST, P_CHARGEBACK, f.chargeback_at),
        (f.deliver_by != NO_TIME, P_DELIVER_BY, f.deliver_by),
        (f.last_delivery != NO_LATEST, P_DELIVERY, f.last_delivery),
        (f.inr_at != NO_LATEST, P_INR, f.inr_at),
    ];
    let mut present = 0u32;
    for (p, bit, _) in opt {
        if p {
            present |= bit;
        }
    }
    if f.buyer_messages != 0 {
        present |= P_MSGS;
    }
    let h = (f.applied as u64 & 0x3F_FFFF)
        | (f.flags as u64 & 0x3FFF) << 22
        | (present as u64) << 36;
    out.extend_from_slice(&h.to_le_bytes()[..6]);
    put_time(out, at, BASE_US);
    for (p, _, v) in opt {
        if p {
            put_time(out, v, at);
        }
    }
    if f.buyer_messages != 0 {
        put_var(out, f.buyer_messages as u64);
    }
    put_var(out, ndigests as u64);
}

// --- sellers ---------------------------------------------------------------------

/// MessageState (engine.py), plus its position in the seller's dict order.
#[derive(Clone, Debug)]
pub struct Msg {
    pub at: i64,
    pub order_id: Option<Box<[u8]>>,
    pub counts: bool,
    pub anchor: i64,
    pub digests: Vec<u8>,
    pub asks: bool,
    pub seq: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub at: i64,
    pub anchor: i64,
    pub seq: u64,
}

/// What few sellers hold: messages, replies, held events, timers.
pub struct Ext {
    pub messages: HashMap<Box<[u8]>, Msg>,
    pub replies: HashMap<Box<[u8]>, Reply>,
    /// (occurred_at, arrival seq, the event's JSON)
    pub future: BinaryHeap<Reverse<(i64, u64, Box<[u8]>)>>,
    /// (deadline, hash of the record's key)
    pub timers: BinaryHeap<Reverse<(i64, u64)>>,
    pub next_seq: u64,
    /// The earliest wake-up this seller has in the global heap (i64::MAX: none).
    pub wake_at: i64,
}

/// One seller. Its id and window sums share one slab record (`id length varint |
/// id | meta | lanes (3 B) | counts`): the lookup by id reads the record the event
/// then counts in.
pub struct Seller {
    pub created: u64, // creation order: the Python engine's dict order of sellers
    pub orders: HashTable<u32>,
    pub sums: u32, // slab handle of the id-and-sums record
    dirty: u32,
    pub has_orders: bool,
    touched: bool,
    pub ext: Option<Box<Ext>>,
}

impl Default for Ext {
    fn default() -> Self {
        Ext {
            messages: HashMap::new(),
            replies: HashMap::new(),
            future: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            next_seq: 0,
            wake_at: i64::MAX,
        }
    }
}

impl Seller {
    fn ext(&mut self) -> &mut Ext {
        self.ext.get_or_insert_with(Default::default)
    }
    fn holds_nothing(&self) -> bool {
        self.orders.is_empty()
            && self.ext.as_ref().is_none_or(|e| {
                e.messages.is_empty() && e.future.is_empty() && e.replies.is_empty()
            })
    }
}

#[derive(Default, Clone)]
pub struct DirtySet {
    pub meta: bool,
    pub days: Vec<i64>,
}

impl DirtySet {
    #[inline]
    fn add(&mut self, chunk: Option<i64>) {
        match chunk {
            None => self.meta = true,
            Some(d) => {
                if !self.days.contains(&d) {
                    self.days.push(d);
                }
            }
        }
    }
}

/// A map by seller id that keeps its insertion order (Python dict semantics for
/// touched / dirty / freed / ghosts).
pub struct IdMap<V> {
    pub items: Vec<(Box<[u8]>, V)>,
    index: HashMap<Box<[u8]>, usize>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { items: Vec::new(), index: HashMap::new() }
    }
}

impl<V> IdMap<V> {
    fn pos(&self, id: &[u8]) -> Option<usize> {
        self.index.get(id).copied()
    }
    fn entry(&mut self, id: &[u8], make: impl FnOnce() -> V) -> usize {
        if let Some(&p) = self.index.get(id) {
            return p;
        }
        self.items.push((id.into(), make()));
        self.index.insert(id.into(), self.items.len() - 1);
        self.items.len() - 1
    }
    pub fn take(&mut self) -> Vec<(Box<[u8]>, V)> {
        self.index.clear();
        std::mem::take(&mut self.items)
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, id: &[u8]) -> Option<&V> {
        self.pos(id).map(|p| &self.items[p].1)
    }
}

/// Ghosts of one seller: (day, order key, Python-format record), first left wins.
pub type Ghosts = Vec<(i64, Box<[u8]>, Vec<u8>)>;

pub struct Config {
    pub now: i64,
    pub windows: Vec<(i64, i64)>,
    pub fixed_clock: bool,
    pub track_dirty: bool,
    pub track_touched: bool,
    pub future_horizon: Option<i64>,
    pub response_us: Option<i64>,
}

pub struct Core {
    pub now: i64,
    pub today: i64,
    pub horizon: i64,
    pub n_windows: usize,
    windows: Vec<(i64, i64)>,
    windows_of_age: Vec<u64>, // bit i: window i covers that age
    pub fixed_clock: bool,
    pub track_dirty: bool,
    pub track_touched: bool,
    future_horizon: Option<i64>,
    response_us: Option<i64>,
    slab: Slab,
    pub sellers: Vec<Option<Seller>>,
    free_slots: Vec<u32>,
    seller_tab: HashTable<u32>,
    next_created: u64,
    wakeups: BinaryHeap<Reverse<(i64, u32)>>,
    seq: u64,
    pub orders_held: i64,
    pub pending_orders: i64,
    pub deferred: Vec<Box<[u8]>>,
    pub touched: IdMap<Vec<u32>>,
    pub dirty: IdMap<DirtySet>,
    pub freed: IdMap<bool>, // false: re-created since (skipped by take_freed)
    pub ghosts: IdMap<Ghosts>,
    pub ghosts_out: IdMap<Ghosts>,
    scratch: Vec<u8>,
}

/// windows.windows_by_age
pub fn windows_by_age(windows: &[(i64, i64)], horizon: i64) -> Vec<Vec<u8>> {
    (0..horizon)
        .map(|age| {
            windows
                .iter()
                .enumerate()
                .filter(|(_, &(days, lag))| lag <= age && age < lag + days)
                .map(|(i, _)| i as u8)
                .collect()
        })
        .collect()
}

macro_rules! seller {
    ($self:ident, $si:expr) => {
        $self.sellers[$si as usize].as_mut().expect("live seller")
    };
}

impl Core {
    pub fn new(cfg: Config) -> Self {
        let horizon = cfg.windows.iter().map(|(d, l)| d + l).max().unwrap_or(1);
        Core {
            now: cfg.now,
            today: cfg.now.div_euclid(US_PER_DAY),
            horizon,
            n_windows: cfg.windows.len(),
            windows_of_age: windows_by_age(&cfg.windows, horizon)
                .iter()
                .map(|w| w.iter().fold(0u64, |m, &i| m | 1 << i))
                .collect(),
            windows: cfg.windows,
            fixed_clock: cfg.fixed_clock,
            track_dirty: cfg.track_dirty,
            track_touched: cfg.track_touched,
            future_horizon: cfg.future_horizon,
            response_us: cfg.response_us,
            slab: Slab::new(),
            sellers: Vec::new(),
            free_slots: Vec::new(),
            seller_tab: HashTable::new(),
            next_created: 0,
            wakeups: BinaryHeap::new(),
            seq: 0,
            orders_held: 0,
            pending_orders: 0,
            deferred: Vec::new(),
            touched: IdMap::default(),
            dirty: IdMap::default(),
            freed: IdMap::default(),
            ghosts: IdMap::default(),
            ghosts_out: IdMap::default(),
            scratch: Vec::with_capacity(256),
        }
    }

    #[inline]
    fn wins(&self, age: i64) -> u64 {
        if age >= 0 && (age as usize) < self.windows_of_age.len() {
            self.windows_of_age[age as usize]
        } else {
            0
        }
    }

    // --- sellers ------------------------------------------------------------------

    #[inline]
    pub fn find_seller(&self, id: &[u8]) -> Option<u32> {
        let sellers = &self.sellers;
        let slab = &self.slab;
        self.seller_tab
            .find(xxh3_64(id), |&si| {
                crate::json::fast_eq(rec_key(slab.get(sellers[si as usize].as_ref().unwrap().sums)).0, id)
            })
            .copied()
    }

    /// Engine._new_seller
    fn new_seller(&mut self, id: &[u8]) -> u32 {
        if self.track_touched {
            let n = self.n_windows * N_PREDICATES;
            self.touched.entry(id, || vec![0u32; n]);
        }
        let mut rec = Vec::with_capacity(id.len() + 6);
        put_var(&mut rec, id.len() as u64);
        rec.extend_from_slice(id);
        rec.extend_from_slice(&[0, 0, 0, 0]); // meta, lanes: none yet, 1-byte cells
        let sums = self.slab.insert(&rec);
        let seller = Seller {
            created: self.next_created,
            orders: HashTable::new(),
            sums,
            dirty: NONE,
            has_orders: false,
            touched: self.track_touched,
            ext: None,
        };
        self.next_created += 1;
        let si = match self.free_slots.pop() {
            Some(si) => {
                self.sellers[si as usize] = Some(seller);
                si
            }
            None => {
                self.sellers.push(Some(seller));
                (self.sellers.len() - 1) as u32
            }
        };
        let sellers = &self.sellers;
        let slab = &self.slab;
        self.seller_tab.insert_unique(xxh3_64(id), si, |&s| {
            xxh3_64(rec_key(slab.get(sellers[s as usize].as_ref().unwrap().sums)).0)
        });
        if !self.freed.is_empty() {
            if let Some(p) = self.freed.pos(id) {
                self.freed.items[p].1 = false;
            }
        }
        si
    }

    #[inline]
    fn seller_for(&mut self, id: &[u8]) -> u32 {
        match self.find_seller(id) {
            Some(si) => si,
            None => self.new_seller(id),
        }
    }

    /// A seller's id.
    #[inline]
    pub fn sid(&self, si: u32) -> &[u8] {
        rec_key(self.slab.get(self.sellers[si as usize].as_ref().unwrap().sums)).0
    }

    /// Remove a seller's slot (its state is forgotten); its id.
    fn remove_seller(&mut self, si: u32) -> Box<[u8]> {
        let id: Box<[u8]> = self.sid(si).into();
        let s = self.sellers[si as usize].take().expect("live seller");
        let hash = xxh3_64(&id);
        if let Ok(e) = self.seller_tab.find_entry(hash, |&x| x == si) {
            e.remove();
        }
        let slab = &mut self.slab;
        for &h in s.orders.iter() {
            slab.free(h);
        }
        slab.free(s.sums);
        self.free_slots.push(si);
        id
    }

    /// Engine._free_if_empty
    fn free_if_empty(&mut self, si: u32) {
        match &self.sellers[si as usize] {
            Some(s) if s.holds_nothing() => {}
            _ => return,
        }
        self.touch(si);
        let id = self.remove_seller(si);
        if self.track_dirty {
            self.mark_id(&id, None);
            let p = self.freed.entry(&id, || true);
            self.freed.items[p].1 = true;
        }
    }

    /// Engine.drop_seller
    pub fn drop_seller(&mut self, id: &[u8]) {
        let Some(si) = self.find_seller(id) else { return };
        self.touch(si);
        let mut n = 0i64;
        let mut pending = 0i64;
        {
            let s = self.sellers[si as usize].as_ref().unwrap();
            for &h in s.orders.iter() {
                n += 1;
                let (_, flags, _) = order_head(self.slab.get(h));
                if flags & (HAS_ORDER | RESPONSE_REC) == 0 {
                    pending += 1;
                }
            }
        }
        self.orders_held -= n;
        self.pending_orders -= pending;
        self.remove_seller(si);
    }

    // --- sums ---------------------------------------------------------------------

    /// (offset of the cells, cell width, lanes, meta) of an id-and-sums record.
    #[inline(always)]
    fn sums_head(b: &[u8]) -> (usize, usize, u32, u8) {
        let o = rec_key(b).1;
        let meta = b[o];
        let lanes = u32::from_le_bytes([b[o + 1], b[o + 2], b[o + 3], 0]);
        (o + 4, 1usize << (meta & 3), lanes, meta)
    }

    #[inline(always)]
    fn read_cell(b: &[u8], at: usize, width: usize) -> u32 {
        match width {
            1 => b[at] as u32,
            2 => u16::from_le_bytes([b[at], b[at + 1]]) as u32,
            _ => u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]),
        }
    }

    #[inline(always)]
    fn write_cell(b: &mut [u8], at: usize, width: usize, v: u32) {
        match width {
            1 => b[at] = v as u8,
            2 => b[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes()),
            _ => b[at..at + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }

    /// All counts of a seller, [window][predicate] flattened.
    pub fn counts(&self, si: u32) -> Vec<u32> {
        let s = self.sellers[si as usize].as_ref().unwrap();
        let b = self.slab.get(s.sums);
        let (base, width, lanes, _) = Self::sums_head(b);
        let nl = lanes.count_ones() as usize;
        let mut out = vec![0u32; self.n_windows * N_PREDICATES];
        for w in 0..self.n_windows {
            let mut rank = 0;
            for p in 0..N_PREDICATES {
                if lanes >> p & 1 != 0 {
                    out[w * N_PREDICATES + p] =
                        Self::read_cell(b, base + (w * nl + rank) * width, width);
                    rank += 1;
                }
            }
        }
        out
    }

    /// Whether the seller counts any order in the longest (last) window.
    pub fn counts_last(&self, si: u32) -> bool {
        let s = self.sellers[si as usize].as_ref().unwrap();
        let b = self.slab.get(s.sums);
        let (base, width, lanes, _) = Self::sums_head(b);
        let nl = lanes.count_ones() as usize;
        let w = self.n_windows - 1;
        (0..nl).any(|r| Self::read_cell(b, base + (w * nl + r) * width, width) != 0)
    }

    #[cold]
    fn sums_regrow(&mut self, si: u32, lanes: u32, width: usize) {
        let counts = self.counts(si);
        let h = self.sellers[si as usize].as_ref().unwrap().sums;
        let nl = lanes.count_ones() as usize;
        let o = rec_key(self.slab.get(h)).1;
        let mut rec = vec![0u8; o + 4 + self.n_windows * nl * width];
        rec[..o].copy_from_slice(&self.slab.get(h)[..o]);
        rec[o] = width.trailing_zeros() as u8;
        rec[o + 1..o + 4].copy_from_slice(&lanes.to_le_bytes()[..3]);
        let base = o + 4;
        for w in 0..self.n_windows {
            let mut rank = 0;
            for p in 0..N_PREDICATES {
                if lanes >> p & 1 != 0 {
                    Self::write_cell(&mut rec, base + (w * nl + rank) * width, width,
                                     counts[w * N_PREDICATES + p]);
                    rank += 1;
                }
            }
        }
        let nh = self.slab.store(h, &rec);
        seller!(self, si).sums = nh;
    }

    /// Add one to every predicate of `plus` and take one from every predicate of
    /// `minus`, in each window of `wins` (the LANES delta of engine.py).
    fn sums_move(&mut self, si: u32, wins: u64, minus: u32, plus: u32) {
        if wins == 0 || (minus | plus) == 0 {
            return;
        }
        loop {
            let h = self.sellers[si as usize].as_ref().unwrap().sums;
            let b = self.slab.get_mut(h);
            let (base, width, lanes, _) = Self::sums_head(b);
            if plus & !lanes != 0 {
                self.sums_regrow(si, lanes | plus | COMMON_LANES, width);
                continue;
            }
            let nl = lanes.count_ones() as usize;
            let max = if width == 4 { u32::MAX } else { (1u32 << (8 * width)) - 1 };
            // would a cell overflow?
            let mut overflow = false;
            let mut wl = wins;
            'outer: while wl != 0 {
                let w = wl.trailing_zeros();
                wl &= wl - 1;
                let mut bits = plus & !minus;
                while bits != 0 {
                    let p = bits.trailing_zeros();
                    bits &= bits - 1;
                    let rank = (lanes & ((1u32 << p) - 1)).count_ones() as usize;
                    let at = base + (w as usize * nl + rank) * width;
                    if Self::read_cell(b, at, width) == max {
                        overflow = true;
                        break 'outer;
                    }
                }
            }
            if overflow {
                self.sums_regrow(si, lanes, width * 2);
                continue;
            }
            let mut wl = wins;
            while wl != 0 {
                let w = wl.trailing_zeros();
                wl &= wl - 1;
                let mut bits = (plus ^ minus) & lanes;
                while bits != 0 {
                    let p = bits.trailing_zeros();
                    bits &= bits - 1;
                    let rank = (lanes & ((1u32 << p) - 1)).count_ones() as usize;
                    let at = base + (w as usize * nl + rank) * width;
                    let v = Self::read_cell(b, at, width);
                    let nv = if plus >> p & 1 != 0 { v + 1 } else { v.wrapping_sub(1) };
                    Self::write_cell(b, at, width, nv);
                }
            }
            return;
        }
    }

    /// The seller's sums before their first move since take_touched.
    #[inline]
    fn touch(&mut self, si: u32) {
        if !self.track_touched {
            return;
        }
        let s = self.sellers[si as usize].as_ref().unwrap();
        if s.touched {
            return;
        }
        let _ = s;
        let counts = self.counts(si);
        let id: Box<[u8]> = self.sid(si).into();
        self.touched.entry(&id, || counts);
        seller!(self, si).touched = true;
    }

    pub fn take_touched(&mut self) -> Vec<(Box<[u8]>, Vec<u32>)> {
        let out = self.touched.take();
        for (id, _) in &out {
            if let Some(si) = self.find_seller(id) {
                seller!(self, si).touched = false;
            }
        }
        out
    }

    // --- dirty chunks -------------------------------------------------------------

    #[inline]
    fn mark(&mut self, si: u32, chunk: Option<i64>) {
        if !self.track_dirty {
            return;
        }
        let s = self.sellers[si as usize].as_mut().unwrap();
        let mut p = s.dirty;
        if p == NONE {
            let id: Box<[u8]> = self.sid(si).into();
            p = self.dirty.entry(&id, DirtySet::default) as u32;
            seller!(self, si).dirty = p;
        }
        self.dirty.items[p as usize].1.add(chunk);
    }

    fn mark_id(&mut self, id: &[u8], chunk: Option<i64>) {
        if !self.track_dirty {
            return;
        }
        if let Some(si) = self.find_seller(id) {
            return self.mark(si, chunk);
        }
        let p = self.dirty.entry(id, DirtySet::default);
        self.dirty.items[p].1.add(chunk);
    }

    pub fn mark_pub(&mut self, id: &[u8], chunk: Option<i64>) {
        self.mark_id(id, chunk)
    }

    /// Engine.take_dirty
    pub fn take_dirty(&mut self) -> Vec<(Box<[u8]>, DirtySet)> {
        for (id, _) in &self.dirty.items {
            if let Some(si) = self.find_seller(id) {
                if let Some(s) = self.sellers[si as usize].as_mut() {
                    s.dirty = NONE;
                }
            }
        }
        let mut dirty = self.dirty.take();
        let mut pos: HashMap<Box<[u8]>, usize> =
            dirty.iter().enumerate().map(|(i, (id, _))| (id.clone(), i)).collect();
        for (id, ghosts) in std::mem::take(&mut self.ghosts_out.items) {
            let p = *pos.entry(id.clone()).or_insert_with(|| {
                dirty.push((id.clone(), DirtySet::default()));
                dirty.len() - 1
            });
            for (day, _, _) in &ghosts {
                dirty[p].1.add(Some(*day));
            }
        }
        self.ghosts_out.index.clear();
        self.ghosts_out = std::mem::take(&mut self.ghosts);
        dirty
    }

    /// Engine.take_freed
    pub fn take_freed(&mut self) -> Vec<Box<[u8]>> {
        self.freed.take().into_iter().filter(|(_, f)| *f).map(|(id, _)| id).collect()
    }

    /// Engine._leave_ghost
    fn leave_ghost(&mut self, si: u32, day: i64, key: &[u8], record: Vec<u8>) {
        let id: Box<[u8]> = self.sid(si).into();
        let p = self.ghosts.entry(&id, Vec::new);
        let g = &mut self.ghosts.items[p].1;
        if !g.iter().any(|(d, k, _)| *d == day && &**k == key) {
            g.push((day, key.into(), record));
        }
    }

    // --- order records --------------------------------------------------------------

    #[inline]
    fn find_order(&self, si: u32, key: &[u8], hash: u64) -> Option<u32> {
        let slab = &self.slab;
        self.sellers[si as usize]
            .as_ref()
            .unwrap()
            .orders
            .find(hash, |&h| rec_key(slab.get(h)).0 == key)
            .copied()
    }

    /// Store an order record's bytes (new, or in place of handle `found`).
    #[inline]
    fn put_order(&mut self, si: u32, hash: u64, found: Option<u32>, data: &[u8]) {
        let Core { sellers, slab, .. } = self;
        let table = &mut sellers[si as usize].as_mut().unwrap().orders;
        match found {
            Some(h) => {
                let nh = slab.store(h, data);
                if nh != h {
                    if let Some(e) = table.find_mut(hash, |&x| x == h) {
                        *e = nh;
                    }
                }
            }
            None => {
                let nh = slab.insert(data);
                table.insert_unique(hash, nh, |&x| khash(rec_key(slab.get(x)).0));
            }
        }
    }

    fn remove_order(&mut self, si: u32, hash: u64, h: u32) {
        let Core { sellers, slab, .. } = self;
        let table = &mut sellers[si as usize].as_mut().unwrap().orders;
        if let Ok(e) = table.find_entry(hash, |&x| x == h) {
            e.remove();
        }
        slab.free(h);
    }

    /// Engine._commit: re-evaluate, move the sums by the difference, store. The
    /// record keeps the digests of `found` (ds, nd) and gains `digest`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn commit(&mut self, si: u32, key: &[u8], hash: u64, found: Option<u32>, mut f: Fields,
              ds: usize, nd: usize, digest: Option<[u8; 6]>) {
        let mask = evaluate(&f, self.now);
        let applied = f.applied;
        if mask != applied {
            self.touch(si);
            let age = self.today - f.day();
            let w = self.wins(age);
            self.sums_move(si, w, applied & !mask, mask & !applied);
            f.applied = mask;
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        put_var(&mut out, key.len() as u64);
        out.extend_from_slice(key);
        encode_order(&mut out, &f, nd + digest.is_some() as usize);
        if let Some(h) = found {
            out.extend_from_slice(&self.slab.get(h)[ds..ds + 6 * nd]);
        }
        if let Some(d) = digest {
            out.extend_from_slice(&d);
        }
        self.put_order(si, hash, found, &out);
        self.scratch = out;
        if self.track_dirty {
            self.mark(si, Some(f.day()));
        }
    }

    /// Engine._set_timers (no timer on a fixed clock: it could never fire).
    fn set_timers(&mut self, si: u32, hash: u64, f: &Fields) {
        if self.fixed_clock {
            return;
        }
        let (ds, n) = deadlines(f);
        let now = self.now;
        for &d in &ds[..n] {
            if d >= now {
                seller!(self, si).ext().timers.push(Reverse((d, hash)));
                self.push_wakeup(d.saturating_add(1), si);
            }
        }
    }

    #[inline]
    fn push_wakeup(&mut self, t: i64, si: u32) {
        let s = seller!(self, si).ext();
        if t < s.wake_at {
            s.wake_at = t;
            self.wakeups.push(Reverse((t, si)));
        }
    }

    // --- events ---------------------------------------------------------------------

    /// Decode, validate and apply one JSON event (Engine.apply_bytes).
    #[inline]
    pub fn apply_bytes(&mut self, data: &[u8]) -> u8 {
        match crate::json::decode_full(data) {
            Ok(ev) => self.apply(&ev, data),
            Err(false) => INVALID,
            Err(true) => UNSURE,
        }
    }

    /// Engine.apply (`raw` is the event's JSON, kept if the event is held).
    pub fn apply(&mut self, ev: &Event, raw: &[u8]) -> u8 {
        let at = ev.occurred_at;
        if at > self.now {
            return self.hold(ev, raw);
        }
        let si = self.seller_for(&ev.seller_id);
        if ev.kind == Kind::Message {
            return self.on_message(si, ev);
        }
        let key: &[u8] = ev.order_id.as_deref().unwrap_or(b"");
        let hash = khash(key);
        let found = self.find_order(si, key, hash);
        let digest = if ev.kind == Kind::Order { None } else { Some(digest48(&ev.event_id)) };
        let (mut f, ds, nd) = match found {
            None => (Fields::new(self.today), 0, 0),
            Some(h) => {
                let b = self.slab.get(h);
                let (_, end) = rec_key(b);
                let (f, ds, nd) = decode_order(b, end);
                if let Some(d) = &digest {
                    if has_digest(&b[ds..ds + 6 * nd], d) {
                        return DUPLICATE;
                    }
                }
                (f, ds, nd)
            }
        };
        let old = f;
        let mut outcome = APPLIED;
        match ev.kind {
            Kind::Order => {
                let deliver_by = ev.deliver_by.unwrap_or(NO_TIME);
                if f.flags & HAS_ORDER != 0 {
                    if f.day() == at.div_euclid(US_PER_DAY)
                        && f.ship_by == ev.ship_by
                        && f.deliver_by == deliver_by
                    {
                        return DUPLICATE;
                    }
                    return CONFLICT;
                }
                let s = seller!(self, si);
                if !s.has_orders {
                    s.has_orders = true;
                    self.mark(si, None);
                }
                if self.today - at.div_euclid(US_PER_DAY) >= self.horizon {
                    outcome = EXPIRED;
                } else {
                    f.purchased_at = at;
                    f.ship_by = ev.ship_by;
                    f.deliver_by = deliver_by;
                    f.flags |= HAS_ORDER;
                    self.set_timers(si, hash, &f);
                }
            }
            Kind::Cancellation => {
                f.flags |= ANY_CANCEL;
                if ev.by_seller && at < f.first_seller_cancel {
                    f.first_seller_cancel = at;
                }
            }
            Kind::Shipment => {
                if at < f.first_ship {
                    f.first_ship = at;
                }
                if ev.tracked && f.flags & TRACKED_F == 0 {
                    f.flags |= TRACKED_F;
                    self.set_timers(si, hash, &f);
                }
            }
            Kind::Refund => f.flags |= REFUNDED_F,
            Kind::Feedback => {
                if at >= f.feedback_at {
                    f.feedback_at = at;
                    if ev.negative {
                        f.flags |= FB_NEGATIVE;
                    } else {
                        f.flags &= !FB_NEGATIVE;
                    }
                }
            }
            Kind::Claim => {
                let (slot, open, granted) = match ev.claim_type {
                    0 => (&mut f.a_to_z_at, ATOZ_OPEN, ATOZ_GRANTED),
                    1 => (&mut f.chargeback_at, CHARGEBACK_OPEN, CHARGEBACK_GRANTED),
                    _ => (&mut f.inr_at, INR_OPEN, INR_GRANTED),
                };
                if at >= *slot {
                    *slot = at;
                    if ev.claim_status <= 1 {
                        f.flags |= open;
                    } else {
                        f.flags &= !open;
                    }
                    if ev.claim_status == 1 {
                        f.flags |= granted;
                    } else {
                        f.flags &= !granted;
                    }
                }
            }
            Kind::Delivery => {
                if at > f.last_delivery {
                    f.last_delivery = at;
                }
            }
            Kind::Return => f.flags |= RETURNED_F,
            Kind::Message => unreachable!(),
        }
        if outcome == EXPIRED {
            if let Some(h) = found {
                self.remove_order(si, hash, h);
                self.orders_held -= 1;
                self.pending_orders -= 1;
                self.mark(si, Some(old.day()));
            }
            self.mark(si, None);
            self.free_if_empty(si);
            return EXPIRED;
        }
        match found {
            None => {
                self.orders_held += 1;
                if f.flags & HAS_ORDER == 0 {
                    self.pending_orders += 1;
                }
            }
            Some(h) => {
                if f.day() != old.day() && self.track_dirty {
                    let rec = py_pack(&old, &self.slab.get(h)[ds..ds + 6 * nd]);
                    self.leave_ghost(si, old.day(), key, rec);
                }
                if (f.flags ^ old.flags) & HAS_ORDER != 0 {
                    self.pending_orders -= 1;
                }
            }
        }
        self.commit(si, key, hash, found, f, ds, nd, digest);
        if f.flags & HAS_ORDER == 0 {
            return PENDING;
        }
        outcome
    }

    /// Engine._hold
    fn hold(&mut self, ev: &Event, raw: &[u8]) -> u8 {
        if self.fixed_clock {
            return HELD;
        }
        let at = ev.occurred_at;
        if let Some(h) = self.future_horizon {
            if at - self.now > h {
                return TOO_FAR;
            }
        }
        let si = self.seller_for(&ev.seller_id);
        self.seq += 1;
        let seq = self.seq;
        seller!(self, si).ext().future.push(Reverse((at, seq, raw.into())));
        self.mark(si, None);
        self.push_wakeup(at, si);
        HELD
    }

    /// Engine._on_message
    fn on_message(&mut self, si: u32, ev: &Event) -> u8 {
        let at = ev.occurred_at;
        let mid: &[u8] = &ev.message_id;
        let digest = digest48(&ev.event_id);
        let old: Option<Msg> = {
            let s = seller!(self, si);
            s.ext.as_ref().and_then(|e| e.messages.get(mid).cloned())
        };
        if let Some(m) = &old {
            if has_digest(&m.digests, &digest) {
                return DUPLICATE;
            }
        }
        let asks = ev.sender_buyer && ev.response_needed;
        let counts = asks && ev.order_id.is_some();
        self.mark(si, None);
        if !ev.sender_buyer {
            if let Some(q) = &ev.in_reply_to {
                self.reply(si, q, at);
            }
        }
        let today = self.today;
        let order_id: Option<Box<[u8]>> = ev.order_id.as_deref().map(|o| o.into());
        {
            let ext = seller!(self, si).ext();
            match &old {
                None => {
                    ext.next_seq += 1;
                    let seq = ext.next_seq;
                    ext.messages.insert(mid.into(), Msg {
                        at, order_id: order_id.clone(), counts, anchor: today,
                        digests: digest.to_vec(), asks, seq,
                    });
                }
                Some(m) if at >= m.at => {
                    let mut anchor = m.anchor;
                    if asks && anchor < today {
                        anchor = today;
                    }
                    let mut digests = m.digests.clone();
                    digests.extend_from_slice(&digest);
                    ext.messages.insert(mid.into(), Msg {
                        at, order_id: order_id.clone(), counts, anchor, digests, asks,
                        seq: m.seq,
                    });
                }
                Some(_) => {
                    let m = ext.messages.get_mut(mid).unwrap();
                    m.digests.extend_from_slice(&digest);
                    return APPLIED;
                }
            }
        }
        if self.response_us.is_some() && (asks || old.as_ref().is_some_and(|m| m.asks)) {
            self.sync_response(si, mid);
        }
        let old_order = old.as_ref().and_then(|m| if m.counts { m.order_id.clone() } else { None });
        let new_order: Option<&[u8]> = if counts { ev.order_id.as_deref() } else { None };
        match (old_order.as_deref(), new_order) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    self.count_message(si, a, -1, digest);
                }
                if let Some(b) = b {
                    self.count_message(si, b, 1, digest);
                }
            }
        }
        APPLIED
    }

    /// Engine._reply
    fn reply(&mut self, si: u32, q: &[u8], at: i64) {
        let today = self.today;
        {
            let ext = seller!(self, si).ext();
            let known = ext.replies.get(q).copied();
            if let Some(k) = known {
                if k.at <= at {
                    return;
                }
            }
            let (anchor, seq) = match known {
                None => {
                    ext.next_seq += 1;
                    (today, ext.next_seq)
                }
                Some(k) => (k.anchor.max(today), k.seq),
            };
            ext.replies.insert(q.into(), Reply { at, anchor, seq });
        }
        if self.response_us.is_some() {
            let has = seller!(self, si).ext().messages.contains_key(q);
            if has {
                self.sync_response(si, q);
            }
        }
    }

    /// Engine._sync_response
    fn sync_response(&mut self, si: u32, question: &[u8]) {
        let mut key = Vec::with_capacity(question.len() + 1);
        key.push(RESPONSE_KEY);
        key.extend_from_slice(question);
        let hash = khash(&key);
        let record = self.find_order(si, &key, hash);
        let (msg, reply) = {
            let ext = seller!(self, si).ext();
            (ext.messages.get(question).cloned(), ext.replies.get(question).copied())
        };
        let day = msg.as_ref().map_or(0, |m| m.at.div_euclid(US_PER_DAY));
        let live = matches!(&msg, Some(m) if m.asks) && self.today - day < self.horizon;
        if !live {
            if let Some(h) = record {
                self.drop_record(si, hash, h);
            }
            return;
        }
        let msg = msg.unwrap();
        let mut f = Fields::new(day);
        f.purchased_at = msg.at;
        f.flags = RESPONSE_REC;
        f.ship_by = msg.at + self.response_us.unwrap();
        if let Some(r) = reply {
            f.first_ship = r.at;
        }
        let mut record = record;
        if let Some(h) = record {
            let (old_day, _, applied) = order_head(self.slab.get(h));
            if old_day == day {
                f.applied = applied;
            } else {
                self.drop_record(si, hash, h);
                record = None;
            }
        }
        if record.is_none() {
            self.orders_held += 1;
        }
        self.commit(si, &key, hash, record, f, 0, 0, None);
        self.set_timers(si, hash, &f);
    }

    /// Engine._drop_record
    fn drop_record(&mut self, si: u32, hash: u64, h: u32) {
        let (day, _, applied) = order_head(self.slab.get(h));
        if applied != 0 {
            self.touch(si);
            let w = self.wins(self.today - day);
            self.sums_move(si, w, applied, 0);
        }
        self.remove_order(si, hash, h);
        self.orders_held -= 1;
    }

    /// Engine._count_message
    fn count_message(&mut self, si: u32, order_id: &[u8], delta: i64, digest: [u8; 6]) {
        let hash = khash(order_id);
        let found = self.find_order(si, order_id, hash);
        let (mut f, ds, n) = match found {
            None => {
                if delta < 0 {
                    return;
                }
                self.orders_held += 1;
                self.pending_orders += 1;
                (Fields::new(self.today), 0, 0)
            }
            Some(h) => {
                let b = self.slab.get(h);
                let (_, end) = rec_key(b);
                let (f, ds, n) = decode_order(b, end);
                if has_digest(&b[ds..ds + 6 * n], &digest) {
                    return;
                }
                (f, ds, n)
            }
        };
        f.buyer_messages = (f.buyer_messages as i64 + delta).max(0) as u32;
        self.commit(si, order_id, hash, found, f, ds, n, Some(digest));
    }

    // --- clock ----------------------------------------------------------------------

    /// Engine.advance (the caller refuses a fixed clock).
    pub fn advance(&mut self, now: i64) {
        if now <= self.now {
            return;
        }
        let old_today = self.today;
        self.now = now;
        self.today = now.div_euclid(US_PER_DAY);
        if self.today != old_today {
            self.roll(old_today, self.today);
        }
        while let Some(&Reverse((t, si))) = self.wakeups.peek() {
            if t > now {
                break;
            }
            self.wakeups.pop();
            if let Some(s) = self.sellers[si as usize].as_mut() {
                if let Some(e) = s.ext.as_mut() {
                    if e.wake_at == t {
                        e.wake_at = i64::MAX;
                    }
                }
                self.wake(si);
            }
        }
    }

    /// Engine._wake
    fn wake(&mut self, si: u32) {
        let created = self.sellers[si as usize].as_ref().unwrap().created;
        let alive = |c: &Core| matches!(&c.sellers[si as usize], Some(s) if s.created == created);
        let now = self.now;
        loop {
            let raw = {
                let s = seller!(self, si);
                let Some(ext) = s.ext.as_mut() else { break };
                match ext.future.peek() {
                    Some(Reverse((at, _, _))) if *at <= now => ext.future.pop().unwrap().0 .2,
                    _ => break,
                }
            };
            self.mark(si, None);
            if let Ok(ev) = decode(&raw) {
                if self.apply(&ev, &raw) == CONFLICT {
                    self.deferred.push(raw.clone());
                }
            }
            if !alive(self) {
                return; // freed by the apply (an expired order was all it had)
            }
        }
        loop {
            let hash = {
                let s = seller!(self, si);
                let Some(ext) = s.ext.as_mut() else { break };
                match ext.timers.peek() {
                    Some(Reverse((d, _))) if *d < now => ext.timers.pop().unwrap().0 .1,
                    _ => break,
                }
            };
            let found = {
                let slab = &self.slab;
                self.sellers[si as usize]
                    .as_ref()
                    .unwrap()
                    .orders
                    .find(hash, |&h| khash(rec_key(slab.get(h)).0) == hash)
                    .copied()
            };
            if let Some(h) = found {
                let b = self.slab.get(h);
                let (key, end) = rec_key(b);
                let key = key.to_vec();
                let (f, ds, nd) = decode_order(b, end);
                self.commit(si, &key, hash, Some(h), f, ds, nd, None);
            }
        }
        let (t, fu) = {
            let s = seller!(self, si);
            match s.ext.as_ref() {
                Some(e) => (e.timers.peek().map(|r| r.0 .0), e.future.peek().map(|r| r.0 .0)),
                None => (None, None),
            }
        };
        if !self.fixed_clock {
            if let Some(t) = t {
                self.push_wakeup(t.saturating_add(1), si);
            }
            if let Some(a) = fu {
                self.push_wakeup(a, si);
            }
        }
        if let Some(e) = &seller!(self, si).ext {
            if e.timers.is_empty() && e.messages.is_empty() && e.replies.is_empty()
                && e.future.is_empty()
            {
                seller!(self, si).ext = None;
            }
        }
        self.free_if_empty(si);
    }

    /// Engine._roll: a scan of every record instead of a day index.
    fn roll(&mut self, old_day: i64, new_day: i64) {
        let horizon = self.horizon;
        let windows = self.windows.clone();
        for si in 0..self.sellers.len() as u32 {
            if self.sellers[si as usize].is_none() {
                continue;
            }
            let mut emptied = false;
            // orders: window moves, then expiry
            let handles: Vec<u32> =
                self.sellers[si as usize].as_ref().unwrap().orders.iter().copied().collect();
            for h in handles {
                let (day, flags, applied) = order_head(self.slab.get(h));
                if applied != 0 {
                    let (old_age, new_age) = (old_day - day, new_day - day);
                    for (i, &(width, lag)) in windows.iter().enumerate() {
                        let was = lag <= old_age && old_age < lag + width;
                        let is = lag <= new_age && new_age < lag + width;
                        if was != is {
                            self.touch(si);
                            if is {
                                self.sums_move(si, 1 << i, 0, applied);
                            } else {
                                self.sums_move(si, 1 << i, applied, 0);
                            }
                        }
                    }
                }
                if new_day - day >= horizon {
                    let hash = khash(rec_key(self.slab.get(h)).0);
                    self.remove_order(si, hash, h);
                    self.orders_held -= 1;
                    self.mark(si, Some(day));
                    emptied = true;
                    if flags & (HAS_ORDER | RESPONSE_REC) == 0 {
                        self.pending_orders -= 1;
                    }
                }
            }
            // messages and replies leaving the horizon (kept, re-anchored, while
            // their order or question is still held)
            let mut marked = false;
            if self.sellers[si as usize].as_ref().unwrap().ext.is_some() {
                let old_msgs: Vec<(Box<[u8]>, Option<Box<[u8]>>, bool)> = {
                    let ext = seller!(self, si).ext();
                    ext.messages
                        .iter()
                        .filter(|(_, m)| new_day - m.anchor >= horizon)
                        .map(|(k, m)| (k.clone(), m.order_id.clone(), m.counts))
                        .collect()
                };
                for (mid, order_id, counts) in old_msgs {
                    let keep = counts
                        && order_id.as_ref().is_some_and(|o| {
                            !o.is_empty() && self.find_order(si, o, khash(o)).is_some()
                        });
                    let ext = seller!(self, si).ext();
                    if keep {
                        ext.messages.get_mut(&mid).unwrap().anchor = new_day;
                    } else {
                        ext.messages.remove(&mid);
                        emptied = true;
                    }
                    marked = true;
                }
                let ext = seller!(self, si).ext();
                let old_replies: Vec<Box<[u8]>> = ext
                    .replies
                    .iter()
                    .filter(|(_, r)| new_day - r.anchor >= horizon)
                    .map(|(k, _)| k.clone())
                    .collect();
                for q in old_replies {
                    if ext.messages.contains_key(&q) {
                        ext.replies.get_mut(&q).unwrap().anchor = new_day;
                    } else {
                        ext.replies.remove(&q);
                        emptied = true;
                    }
                    marked = true;
                }
            }
            if marked {
                self.mark(si, None);
            }
            let s = seller!(self, si);
            if s.orders.len() * 4 < s.orders.capacity() && s.orders.capacity() > 16 {
                let slab = &self.slab;
                s.orders.shrink_to(s.orders.len(), |&x| khash(rec_key(slab.get(x)).0));
            }
            if emptied {
                self.free_if_empty(si);
            }
        }
        if self.seller_tab.len() * 4 < self.seller_tab.capacity() && self.seller_tab.capacity() > 64 {
            let sellers = &self.sellers;
            let n = self.seller_tab.len();
            let slab = &self.slab;
            self.seller_tab.shrink_to(n, |&s| {
                xxh3_64(rec_key(slab.get(sellers[s as usize].as_ref().unwrap().sums)).0)
            });
        }
    }

    // --- snapshots ------------------------------------------------------------------

    /// Engine._restore_seller, from plain values (the façade decodes msgpack, merges
    /// ghosts, migrates v1 records). The caller dropped the seller first.
    #[allow(clippy::type_complexity)]
    pub fn restore_seller(
        &mut self,
        id: &[u8],
        has_orders: bool,
        orders: Vec<(Vec<u8>, Vec<u8>)>,
        messages: Vec<(Vec<u8>, i64, Option<Vec<u8>>, bool, i64, Vec<u8>)>,
        asking: Vec<Vec<u8>>,
        replies: Vec<(Vec<u8>, i64, i64)>,
        future: Vec<Vec<u8>>,
    ) -> Result<(), String> {
        // validate first: a corrupt record must not leave a half-restored seller
        let mut parsed = Vec::with_capacity(orders.len());
        for (key, rec) in &orders {
            match py_unpack(rec) {
                Some((f, o)) => parsed.push((key, f, &rec[o..])),
                None => return Err(format!("order {:?}: not a record", String::from_utf8_lossy(key))),
            }
        }
        let mut fut = Vec::with_capacity(future.len());
        for raw in future {
            match decode(&raw) {
                Ok(ev) => fut.push((ev.occurred_at, raw)),
                Err(()) => return Err("a held event that is not a valid event".into()),
            }
        }
        let si = self.new_seller(id);
        seller!(self, si).has_orders = has_orders;
        let (today, horizon, now) = (self.today, self.horizon, self.now);
        let mut out = Vec::new();
        for (key, f, digs) in parsed {
            let day = f.day();
            if today - day >= horizon {
                self.mark(si, Some(day));
                continue;
            }
            let hash = khash(key);
            out.clear();
            put_var(&mut out, key.len() as u64);
            out.extend_from_slice(key);
            encode_order(&mut out, &f, digs.len() / 6);
            out.extend_from_slice(digs);
            let found = self.find_order(si, key, hash);
            if let Some(h) = found {
                // a key twice in one snapshot cannot come from an engine; keep the last
                self.remove_order(si, hash, h);
                self.orders_held -= 1;
            }
            self.put_order(si, hash, None, &out);
            self.orders_held += 1;
            if f.flags & HAS_ORDER == 0 {
                self.pending_orders += 1;
                continue;
            }
            if f.applied != 0 {
                let w = self.wins(today - day);
                self.sums_move(si, w, 0, f.applied);
            }
            let (ds, n) = deadlines(&f);
            for &d in &ds[..n] {
                // on a fixed clock only the deadlines already passed can fire (now)
                if !self.fixed_clock || d < now {
                    seller!(self, si).ext().timers.push(Reverse((d, hash)));
                }
            }
        }
        let asking: std::collections::HashSet<Vec<u8>> = asking.into_iter().collect();
        for (mid, at, about, counts, anchor, digests) in messages {
            let held = counts
                && about.as_ref().is_some_and(|o| !o.is_empty() && self.find_order(si, o, khash(o)).is_some());
            if today - anchor >= horizon && !held {
                continue;
            }
            let anchor = anchor.max(today - horizon + 1);
            let asks = asking.contains(&mid);
            let ext = seller!(self, si).ext();
            ext.next_seq += 1;
            let seq = ext.next_seq;
            ext.messages.insert(mid.into(), Msg {
                at, order_id: about.map(|o| o.into()), counts, anchor, digests, asks, seq,
            });
        }
        for (q, at, anchor) in replies {
            let ext = seller!(self, si).ext();
            if today - anchor >= horizon && !ext.messages.contains_key(&q[..]) {
                continue;
            }
            let anchor = anchor.max(today - horizon + 1);
            ext.next_seq += 1;
            let seq = ext.next_seq;
            ext.replies.insert(q.into(), Reply { at, anchor, seq });
        }
        if self.response_us.is_some() {
            let mut questions: Vec<Vec<u8>> = asking
                .into_iter()
                .filter(|q| {
                    self.sellers[si as usize].as_ref().unwrap().ext.as_ref()
                        .is_some_and(|e| e.messages.contains_key(&q[..]))
                })
                .collect();
            questions.sort();
            for q in questions {
                self.sync_response(si, &q);
            }
        }
        for (at, raw) in fut {
            self.seq += 1;
            let seq = self.seq;
            seller!(self, si).ext().future.push(Reverse((at, seq, raw.into())));
        }
        self.wake(si);
        Ok(())
    }

    /// Order records of a seller in the Python format, sorted by key:
    /// (day, key, record); response records only if asked.
    pub fn records(&self, si: u32, with_response: bool) -> Vec<(i64, Vec<u8>, Vec<u8>)> {
        let s = self.sellers[si as usize].as_ref().unwrap();
        let mut out = Vec::with_capacity(s.orders.len());
        for &h in s.orders.iter() {
            let b = self.slab.get(h);
            let (key, end) = rec_key(b);
            if !with_response && key.first() == Some(&RESPONSE_KEY) {
                continue;
            }
            let (f, ds, nd) = decode_order(b, end);
            out.push((f.day(), key.to_vec(), py_pack(&f, &b[ds..ds + 6 * nd])));
        }
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// One record in the Python format.
    pub fn record(&self, si: u32, key: &[u8]) -> Option<Vec<u8>> {
        let h = self.find_order(si, key, khash(key))?;
        let b = self.slab.get(h);
        let (_, end) = rec_key(b);
        let (f, ds, nd) = decode_order(b, end);
        Some(py_pack(&f, &b[ds..ds + 6 * nd]))
    }

    /// Seller ids in creation order (the Python engine's dict order).
    pub fn seller_slots(&self) -> Vec<u32> {
        let mut v: Vec<(u64, u32)> = self
            .sellers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (s.created, i as u32)))
            .collect();
        v.sort_unstable();
        v.into_iter().map(|(_, i)| i).collect()
    }

    pub fn n_sellers(&self) -> usize {
        self.seller_tab.len()
    }

    /// Heap bytes held, capacity-based: slab chunks in full, tables at capacity,
    /// the seller vector and structs, ids, the rarer per-seller state.
    pub fn memory_bytes(&self) -> usize {
        let mut n = self.slab.heap_bytes()
            + self.seller_tab.allocation_size()
            + self.sellers.capacity() * std::mem::size_of::<Option<Seller>>()
            + self.free_slots.capacity() * 4
            + self.wakeups.capacity() * 16
            + self.scratch.capacity()
            + self.windows_of_age.capacity() * 8;
        for s in self.sellers.iter().flatten() {
            n += s.orders.allocation_size();
            if let Some(e) = &s.ext {
                n += std::mem::size_of::<Ext>()
                    + e.messages.allocation_size()
                    + e.replies.allocation_size()
                    + e.timers.capacity() * 16
                    + e.future.capacity() * 40;
                for (k, m) in &e.messages {
                    n += k.len() + m.digests.capacity() + m.order_id.as_ref().map_or(0, |o| o.len());
                }
                for (k, _) in &e.replies {
                    n += k.len();
                }
                for r in e.future.iter() {
                    n += r.0 .2.len();
                }
            }
        }
        n
    }

    /// Where the bytes go (for the benchmark's report).
    pub fn breakdown(&self) -> Vec<(&'static str, usize)> {
        let mut content = 0;
        let mut digests = 0;
        let mut keys = 0;
        let mut tables = 0;
        let mut timers = 0;
        for s in self.sellers.iter().flatten() {
            tables += s.orders.allocation_size();
            if let Some(e) = &s.ext {
                timers += e.timers.capacity() * 16;
            }
            for &h in s.orders.iter() {
                let b = self.slab.get(h);
                let (key, end) = rec_key(b);
                keys += key.len() + var_len(key.len() as u64);
                let (_, ds, nd) = decode_order(b, end);
                content += ds + 6 * nd;
                digests += 6 * nd;
            }
        }
        vec![
            ("order_record_content", content),
            ("order_keys", keys),
            ("order_digests", digests),
            ("order_tables", tables),
            ("timers", timers),
            ("wakeups", self.wakeups.capacity() * 16),
            ("slab_live_slots", self.slab.live_slot_bytes),
            ("slab_total", self.slab.heap_bytes()),
            ("sellers", self.sellers.capacity() * std::mem::size_of::<Option<Seller>>()),
            ("total", self.memory_bytes()),
        ]
    }
}
