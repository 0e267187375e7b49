//! A one-object JSON decoder for the event contract, validating what
//! `streams.engine.events.decode_event` validates (msgspec's rules, measured):
//!
//! * strict JSON (RFC 8259): one object, whitespace around it, no trailing
//!   characters, no trailing commas, no NaN, numbers by the grammar, strings without
//!   raw control characters, escapes well-formed (a `\u` surrogate must pair);
//! * values of the keys the event's type declares are typed and checked; the values
//!   of other keys are only checked for well-formed JSON (msgspec does not check the
//!   UTF-8 of strings it skips, so neither does this);
//! * a repeated key: the last wins, except `type`, whose later values must equal the
//!   first (msgspec picks the struct by the first and then rejects another tag);
//! * strings decoded as UTF-8 (invalid UTF-8 in a decoded string is a reject),
//!   lengths in code points, the seller id's charset `[A-Za-z0-9._:-]`.
//!
//! Rejects carry no message (the prototype counts them); a production port needs
//! the reason and JSON path `InvalidEvent` carries, for the dead-letter topic.

use crate::ts;
use std::borrow::Cow;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    Order,
    Cancellation,
    Shipment,
    Refund,
    Feedback,
    Claim,
    Message,
    Delivery,
    Return,
}

#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a [u8], bool), // raw content between the quotes, has escapes
    Num(&'a [u8]),
    True,
    False,
    Null,
    Other,
}

// Known keys (of any event type).
const K_EVENT_ID: usize = 0;
const K_TYPE: usize = 1;
const K_SELLER_ID: usize = 2;
const K_OCCURRED_AT: usize = 3;
const K_ORDER_ID: usize = 4;
const K_SHIP_BY: usize = 5;
const K_MARKETPLACE: usize = 6;
const K_AMOUNT: usize = 7;
const K_CURRENCY: usize = 8;
const K_DELIVER_BY: usize = 9;
const K_TRACKING_ID: usize = 10;
const K_REASON: usize = 11;
const K_RATING: usize = 12;
const K_REMOVED: usize = 13;
const K_CLAIM_TYPE: usize = 14;
const K_STATUS: usize = 15;
const K_MESSAGE_ID: usize = 16;
const K_SENDER: usize = 17;
const K_RESPONSE_NEEDED: usize = 18;
const K_IN_REPLY_TO: usize = 19;
const K_INITIATED_BY: usize = 20;
const N_KEYS: usize = 21;

#[inline(always)]
fn key_index(k: &[u8]) -> Option<usize> {
    // by length first: one comparison of a few bytes per key
    let (want, idx): (&[u8], usize) = match (k.len(), k.first()) {
        (4, _) => (b"type", K_TYPE),
        (6, _) => match (k[0], k[1]) {
            (b'a', _) => (b"amount", K_AMOUNT),
            (b'r', b'a') => (b"rating", K_RATING),
            (b'r', _) => (b"reason", K_REASON),
            (b's', b't') => (b"status", K_STATUS),
            (b's', _) => (b"sender", K_SENDER),
            _ => return None,
        },
        (7, Some(b's')) => (b"ship_by", K_SHIP_BY),
        (7, Some(b'r')) => (b"removed", K_REMOVED),
        (8, Some(b'e')) => (b"event_id", K_EVENT_ID),
        (8, Some(b'o')) => (b"order_id", K_ORDER_ID),
        (8, Some(b'c')) => (b"currency", K_CURRENCY),
        (9, _) => (b"seller_id", K_SELLER_ID),
        (10, Some(b'd')) => (b"deliver_by", K_DELIVER_BY),
        (10, Some(b'c')) => (b"claim_type", K_CLAIM_TYPE),
        (10, Some(b'm')) => (b"message_id", K_MESSAGE_ID),
        (11, Some(b'o')) => (b"occurred_at", K_OCCURRED_AT),
        (11, Some(b'm')) => (b"marketplace", K_MARKETPLACE),
        (11, Some(b't')) => (b"tracking_id", K_TRACKING_ID),
        (11, Some(b'i')) => (b"in_reply_to", K_IN_REPLY_TO),
        (12, _) => (b"initiated_by", K_INITIATED_BY),
        (15, _) => (b"response_needed", K_RESPONSE_NEEDED),
        _ => return None,
    };
    if fast_eq(k, want) { Some(idx) } else { None }
}

/// A decoded, validated event: only what the engine uses.
pub struct Event<'a> {
    pub kind: Kind,
    pub event_id: Cow<'a, [u8]>,
    pub seller_id: Cow<'a, [u8]>,
    pub occurred_at: i64,
    pub order_id: Option<Cow<'a, [u8]>>,
    pub ship_by: i64,
    pub deliver_by: Option<i64>,
    pub tracked: bool,          // shipment: tracking_id non-empty
    pub negative: bool,         // feedback: rating <= 2 and not removed
    pub claim_type: u8,         // 0 a_to_z, 1 chargeback, 2 item_not_received
    pub claim_status: u8,       // 0 opened, 1 granted, 2 denied, 3 withdrawn
    pub message_id: Cow<'a, [u8]>,
    pub sender_buyer: bool,
    pub response_needed: bool,
    pub in_reply_to: Option<Cow<'a, [u8]>>,
    pub by_seller: bool,        // cancellation initiated_by seller
}

pub type R<T> = Result<T, ()>;

struct P<'a> {
    b: &'a [u8],
    i: usize,
    /// Rejected for a reason where msgspec may differ: a repeated known key (msgspec
    /// type-checks every occurrence), nesting deeper than MAX_DEPTH (msgspec's limit
    /// is near 10,000). The caller takes the slow path (`decode_event`) then.
    unsure: bool,
}

/// Nesting depth past which a document is left to `decode_event`.
const MAX_DEPTH: usize = 1000;

impl<'a> P<'a> {
    #[inline(always)]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\n' | b'\r' | b'\t') {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn peek(&self) -> R<u8> {
        self.b.get(self.i).copied().ok_or(())
    }

    /// After the opening quote; returns the raw content and whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> R<(&'a [u8], bool)> {
        let b = self.b;
        let start = self.i;
        let mut esc = false;
        loop {
            self.i = scan_plain(b, self.i);
            let c = *b.get(self.i).ok_or(())?;
            if c == b'"' {
                let s = &b[start..self.i];
                self.i += 1;
                return Ok((s, esc));
            }
            if c < 0x20 {
                return Err(());
            }
            // backslash
            esc = true;
            let e = *b.get(self.i + 1).ok_or(())?;
            match e {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                b'u' => {
                    let cp = hex4(b, self.i + 2)?;
                    self.i += 6;
                    if (0xD800..0xDC00).contains(&cp) {
                        if b.get(self.i) != Some(&b'\\') || b.get(self.i + 1) != Some(&b'u') {
                            return Err(());
                        }
                        let lo = hex4(b, self.i + 2)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(());
                        }
                        self.i += 6;
                    } else if (0xDC00..0xE000).contains(&cp) {
                        return Err(());
                    }
                }
                _ => return Err(()),
            }
        }
    }

    #[inline(always)]
    fn number(&mut self) -> R<&'a [u8]> {
        let b = self.b;
        let start = self.i;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(c) if c.is_ascii_digit() => {
                while self.i < b.len() && b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            }
            _ => return Err(()),
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let s = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == s {
                return Err(());
            }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let s = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == s {
                return Err(());
            }
        }
        Ok(&b[start..self.i])
    }

    #[inline(always)]
    fn lit(&mut self, word: &[u8]) -> R<()> {
        if self.b.len() >= self.i + word.len() && &self.b[self.i..self.i + word.len()] == word {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    /// One value; containers are skipped (checked, not kept).
    #[inline(always)]
    fn value(&mut self) -> R<Val<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                let (s, e) = self.string()?;
                Ok(Val::Str(s, e))
            }
            b'-' | b'0'..=b'9' => Ok(Val::Num(self.number()?)),
            b't' => self.lit(b"true").map(|_| Val::True),
            b'f' => self.lit(b"false").map(|_| Val::False),
            b'n' => self.lit(b"null").map(|_| Val::Null),
            b'{' | b'[' => {
                self.skip_container()?;
                Ok(Val::Other)
            }
            _ => Err(()),
        }
    }

    /// Skip a nested container, iteratively (any depth; msgspec stops near 10,000
    /// levels, this does not: the one known difference in what is accepted).
    #[cold]
    fn skip_container(&mut self) -> R<()> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // at the start of a value
            self.ws();
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    self.ws();
                    if self.peek()? == b'}' {
                        self.i += 1;
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            self.unsure = true;
                            return Err(());
                        }
                        stack.push(b'}');
                        self.expect_key()?;
                        continue;
                    }
                }
                b'[' => {
                    self.i += 1;
                    self.ws();
                    if self.peek()? == b']' {
                        self.i += 1;
                    } else {
                        if stack.len() >= MAX_DEPTH {
                            self.unsure = true;
                            return Err(());
                        }
                        stack.push(b']');
                        continue;
                    }
                }
                _ => {
                    self.value()?;
                }
            }
            // after a value: close containers or move to the next element
            loop {
                let Some(&close) = stack.last() else { return Ok(()) };
                self.ws();
                let c = self.peek()?;
                self.i += 1;
                if c == close {
                    stack.pop();
                    continue;
                }
                if c != b',' {
                    return Err(());
                }
                if close == b'}' {
                    self.ws();
                    self.expect_key()?;
                }
                break;
            }
        }
    }

    fn expect_key(&mut self) -> R<()> {
        if self.peek()? != b'"' {
            return Err(());
        }
        self.i += 1;
        self.string()?;
        self.ws();
        if self.peek()? != b':' {
            return Err(());
        }
        self.i += 1;
        Ok(())
    }
}

/// The first byte at or after `i` that is a quote, a backslash or a control
/// character (8 bytes at a time: the lowest flagged byte of each test is exact).
#[inline(always)]
fn scan_plain(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let q = w ^ (ONES * b'"' as u64);
        let bs = w ^ (ONES * b'\\' as u64);
        let m = (q.wrapping_sub(ONES) & !q)
            | (bs.wrapping_sub(ONES) & !bs)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let m = m & HIGH;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Slice equality without a call to memcmp (short keys).
#[inline(always)]
pub fn fast_eq(a: &[u8], b: &[u8]) -> bool {
    #[inline(always)]
    fn w8(s: &[u8], i: usize) -> u64 {
        u64::from_le_bytes(s[i..i + 8].try_into().unwrap())
    }
    #[inline(always)]
    fn w4(s: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(s[i..i + 4].try_into().unwrap())
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            if w8(a, i) != w8(b, i) {
                return false;
            }
            i += 8;
        }
        return w8(a, n - 8) == w8(b, n - 8);
    }
    if n >= 4 {
        return w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

#[inline]
fn hex4(b: &[u8], i: usize) -> R<u32> {
    let s = b.get(i..i + 4).ok_or(())?;
    let mut v = 0u32;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(()),
        };
        v = v << 4 | d as u32;
    }
    Ok(v)
}

/// Unescape a string's raw content (escapes already validated) into UTF-8 bytes,
/// and check it is UTF-8.
fn decode_str(raw: &[u8], esc: bool) -> R<Cow<'_, [u8]>> {
    if !esc {
        if raw.is_ascii() || std::str::from_utf8(raw).is_ok() {
            return Ok(Cow::Borrowed(raw));
        }
        return Err(());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let cp = hex4(raw, i)?;
                i += 4;
                let cp = if (0xD800..0xDC00).contains(&cp) {
                    let lo = hex4(raw, i + 2)?;
                    i += 6;
                    0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                } else {
                    cp
                };
                char::from_u32(cp).ok_or(())?
            }
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    if std::str::from_utf8(&out).is_err() {
        return Err(());
    }
    Ok(Cow::Owned(out))
}

#[inline]
fn chars(s: &[u8]) -> usize {
    // code points of valid UTF-8: bytes that are not continuation bytes
    if s.is_ascii() {
        s.len()
    } else {
        s.iter().filter(|&&c| (c & 0xC0) != 0x80).count()
    }
}

#[inline]
fn req_str<'a>(v: Option<Val<'a>>, min: usize, max: usize) -> R<Cow<'a, [u8]>> {
    match v {
        Some(Val::Str(raw, esc)) => {
            let s = decode_str(raw, esc)?;
            let n = chars(&s);
            if n < min || n > max {
                return Err(());
            }
            Ok(s)
        }
        _ => Err(()),
    }
}

#[inline]
fn opt_str<'a>(v: Option<Val<'a>>, min: usize, max: usize) -> R<Option<Cow<'a, [u8]>>> {
    match v {
        None | Some(Val::Null) => Ok(None),
        v => req_str(v, min, max).map(Some),
    }
}

#[inline]
fn req_ts(v: Option<Val<'_>>) -> R<i64> {
    match v {
        Some(Val::Str(raw, esc)) => {
            if esc {
                ts::parse(&decode_str(raw, esc)?).ok_or(())
            } else {
                ts::parse(raw).ok_or(())
            }
        }
        _ => Err(()),
    }
}

#[inline]
fn opt_ts(v: Option<Val<'_>>) -> R<Option<i64>> {
    match v {
        None | Some(Val::Null) => Ok(None),
        v => req_ts(v).map(Some),
    }
}

#[inline]
fn opt_amount(v: Option<Val<'_>>) -> R<()> {
    match v {
        None | Some(Val::Null) => Ok(()),
        Some(Val::Num(n)) => {
            // fast path: no sign, no exponent, few digits: finite and >= 0
            if n.len() <= 15 && n[0] != b'-' && !n.iter().any(|&c| c == b'e' || c == b'E') {
                return Ok(());
            }
            let x = parse_f64(n)?;
            if x >= 0.0 { Ok(()) } else { Err(()) }
        }
        _ => Err(()),
    }
}

#[inline]
fn parse_f64(n: &[u8]) -> R<f64> {
    // grammar already checked; Rust's parser rounds correctly
    let x: f64 = unsafe { std::str::from_utf8_unchecked(n) }.parse().map_err(|_| ())?;
    if x.is_finite() { Ok(x) } else { Err(()) } // msgspec: "Number out of range"
}

#[inline]
fn opt_bool(v: Option<Val<'_>>, default: bool) -> R<bool> {
    match v {
        None => Ok(default),
        Some(Val::True) => Ok(true),
        Some(Val::False) => Ok(false),
        _ => Err(()),
    }
}

#[inline]
fn enum_of(v: Option<Val<'_>>, names: &[&[u8]]) -> R<u8> {
    let s = req_str(v, 0, usize::MAX)?;
    names.iter().position(|n| *n == &*s).map(|p| p as u8).ok_or(())
}

#[inline]
fn seller_ok(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Decode and validate one event document.
#[inline]
pub fn decode(b: &[u8]) -> R<Event<'_>> {
    decode_full(b).map_err(|_| ())
}

/// `decode`, telling a sure reject (`Err(false)`) from a document left to
/// `decode_event` (`Err(true)`, see `P::unsure`).
pub fn decode_full(b: &[u8]) -> Result<Event<'_>, bool> {
    let mut p = P { b, i: 0, unsure: false };
    let mut seen = 0u32;
    decode_in(&mut p, &mut seen).map_err(|_| p.unsure)
}

fn decode_in<'a>(p: &mut P<'a>, seen: &mut u32) -> R<Event<'a>> {
    let b = p.b;
    let mut vals: [Option<Val>; N_KEYS] = [None; N_KEYS];
    let mut first_type: Option<Cow<[u8]>> = None;
    p.ws();
    if p.peek()? != b'{' {
        return Err(());
    }
    p.i += 1;
    p.ws();
    if p.peek()? == b'}' {
        p.i += 1;
    } else {
        loop {
            if p.peek()? != b'"' {
                return Err(());
            }
            p.i += 1;
            let (k, kesc) = p.string()?;
            p.ws();
            if p.peek()? != b':' {
                return Err(());
            }
            p.i += 1;
            p.ws();
            let v = p.value()?;
            let idx = if kesc {
                match decode_str(k, true) {
                    Ok(k) => key_index(&k),
                    Err(_) => None,
                }
            } else {
                key_index(k)
            };
            if let Some(idx) = idx {
                if idx != K_TYPE {
                    if *seen >> idx & 1 != 0 {
                        p.unsure = true;
                        return Err(());
                    }
                    *seen |= 1 << idx;
                }
                if idx == K_TYPE {
                    match (&first_type, v) {
                        (None, Val::Str(raw, esc)) => first_type = Some(decode_str(raw, esc)?),
                        (None, _) => return Err(()),
                        (Some(t), Val::Str(raw, esc)) => {
                            if decode_str(raw, esc)? != *t {
                                return Err(());
                            }
                        }
                        (Some(_), _) => return Err(()),
                    }
                }
                vals[idx] = Some(v);
            }
            p.ws();
            match p.peek()? {
                b',' => {
                    p.i += 1;
                    p.ws();
                }
                b'}' => {
                    p.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
    }
    p.ws();
    if p.i != b.len() {
        return Err(());
    }
    let kind = match first_type.as_deref() {
        Some(b"order") => Kind::Order,
        Some(b"cancellation") => Kind::Cancellation,
        Some(b"shipment") => Kind::Shipment,
        Some(b"refund") => Kind::Refund,
        Some(b"feedback") => Kind::Feedback,
        Some(b"claim") => Kind::Claim,
        Some(b"message") => Kind::Message,
        Some(b"delivery") => Kind::Delivery,
        Some(b"return") => Kind::Return,
        _ => return Err(()),
    };
    let event_id = req_str(vals[K_EVENT_ID], 1, 128)?;
    let seller_id = req_str(vals[K_SELLER_ID], 1, 64)?;
    if !seller_ok(&seller_id) {
        return Err(());
    }
    let occurred_at = req_ts(vals[K_OCCURRED_AT])?;
    let mut ev = Event {
        kind,
        event_id,
        seller_id,
        occurred_at,
        order_id: None,
        ship_by: 0,
        deliver_by: None,
        tracked: false,
        negative: false,
        claim_type: 0,
        claim_status: 0,
        message_id: Cow::Borrowed(b""),
        sender_buyer: false,
        response_needed: true,
        in_reply_to: None,
        by_seller: false,
    };
    if kind == Kind::Message {
        ev.message_id = req_str(vals[K_MESSAGE_ID], 1, 128)?;
        ev.sender_buyer = enum_of(vals[K_SENDER], &[b"buyer", b"seller"])? == 0;
        ev.response_needed = opt_bool(vals[K_RESPONSE_NEEDED], true)?;
        ev.order_id = opt_str(vals[K_ORDER_ID], 1, 128)?;
        ev.in_reply_to = opt_str(vals[K_IN_REPLY_TO], 1, 128)?;
        return Ok(ev);
    }
    ev.order_id = Some(req_str(vals[K_ORDER_ID], 1, 128)?);
    match kind {
        Kind::Order => {
            ev.ship_by = req_ts(vals[K_SHIP_BY])?;
            opt_str(vals[K_MARKETPLACE], 0, usize::MAX)?;
            opt_amount(vals[K_AMOUNT])?;
            opt_str(vals[K_CURRENCY], 0, usize::MAX)?;
            ev.deliver_by = opt_ts(vals[K_DELIVER_BY])?;
        }
        Kind::Cancellation => {
            ev.by_seller = enum_of(vals[K_INITIATED_BY], &[b"seller", b"buyer"])? == 0;
        }
        Kind::Shipment => {
            ev.tracked = matches!(opt_str(vals[K_TRACKING_ID], 0, usize::MAX)?, Some(t) if !t.is_empty());
        }
        Kind::Refund => {
            opt_amount(vals[K_AMOUNT])?;
            opt_str(vals[K_REASON], 0, usize::MAX)?;
        }
        Kind::Feedback => {
            let r = match vals[K_RATING] {
                Some(Val::Num(n)) => parse_f64(n)?,
                _ => return Err(()),
            };
            if !(1.0..=5.0).contains(&r) || r.fract() != 0.0 {
                return Err(());
            }
            let removed = opt_bool(vals[K_REMOVED], false)?;
            ev.negative = r <= 2.0 && !removed;
        }
        Kind::Claim => {
            ev.claim_type = enum_of(vals[K_CLAIM_TYPE], &[b"a_to_z", b"chargeback", b"item_not_received"])?;
            ev.claim_status = match vals[K_STATUS] {
                None => 0,
                v => enum_of(v, &[b"opened", b"granted", b"denied", b"withdrawn"])?,
            };
        }
        Kind::Delivery => {}
        Kind::Return => {
            opt_str(vals[K_REASON], 0, usize::MAX)?;
        }
        Kind::Message => unreachable!(),
    }
    Ok(ev)
}

/// The elements of a JSON array document, as byte ranges (each element only
/// checked for well-formed JSON here; `decode` validates it as an event), or
/// `Err` for anything that is not one well-formed array.
pub fn split_array(b: &[u8]) -> R<Vec<(usize, usize)>> {
    let mut p = P { b, i: 0, unsure: false };
    let mut out = Vec::new();
    p.ws();
    if p.peek()? != b'[' {
        return Err(());
    }
    p.i += 1;
    p.ws();
    if p.peek()? == b']' {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let start = p.i;
            p.value()?;
            out.push((start, p.i));
            p.ws();
            match p.peek()? {
                b',' => p.i += 1,
                b']' => {
                    p.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
    }
    p.ws();
    if p.i != b.len() {
        return Err(());
    }
    Ok(out)
}

/// Whether the document's first non-blank byte opens an array.
pub fn is_array(b: &[u8]) -> bool {
    b.iter().find(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t')) == Some(&b'[')
}
