//! `streams._native`: the compiled engine core behind
//! `streams.engine.native.NativeEngine` (issue #14).
//!
//! The binding is thin: plain Python values in and out (bytes, ints, tuples,
//! lists); the façade (`native.py`) owns exceptions, msgspec encoding of snapshots
//! and chunks, and the public API of `streams.engine.engine.Engine`.

mod core;
mod json;
mod slab;
mod ts;

use crate::core::{Config, Core};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[pyclass(name = "Core", module = "streams._native")]
struct PyCore {
    core: Core,
}

/// A decoded Kafka message: one event, or a JSON array of events, all valid.
#[pyclass(name = "DecodedBatch", module = "streams._native", frozen)]
struct Batch {
    data: Py<PyBytes>,
    ranges: Vec<(usize, usize)>,
    kinds: Vec<u8>,
    sellers: Vec<String>,
    #[pyo3(get)]
    is_array: bool,
}

#[pymethods]
impl Batch {
    /// One type code per event (0 order .. 8 return, the `Kind` order).
    #[getter]
    fn kinds<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.kinds)
    }
    #[getter]
    fn seller_ids(&self) -> Vec<String> {
        self.sellers.clone()
    }
    /// The JSON of event `i`.
    fn raw<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyBytes>> {
        let (a, b) = *self.ranges.get(i).ok_or_else(|| PyValueError::new_err("index"))?;
        Ok(PyBytes::new(py, &self.data.bind(py).as_bytes()[a..b]))
    }
    fn __len__(&self) -> usize {
        self.ranges.len()
    }
}

#[pymethods]
impl PyCore {
    #[new]
    #[pyo3(signature = (now, windows, fixed_clock, track_dirty, track_touched, future_horizon, response_us))]
    fn new(now: i64, windows: Vec<(i64, i64)>, fixed_clock: bool, track_dirty: bool,
           track_touched: bool, future_horizon: Option<i64>, response_us: Option<i64>)
           -> PyResult<Self> {
        if windows.is_empty() || windows.len() > 64 || windows.iter().any(|&(d, l)| d < 1 || l < 0) {
            return Err(PyValueError::new_err("1..64 windows of days >= 1, lag >= 0"));
        }
        Ok(PyCore {
            core: Core::new(Config {
                now, windows, fixed_clock, track_dirty, track_touched, future_horizon, response_us,
            }),
        })
    }

    #[getter]
    fn now(&self) -> i64 {
        self.core.now
    }
    #[getter]
    fn today(&self) -> i64 {
        self.core.today
    }
    #[getter]
    fn orders_held(&self) -> i64 {
        self.core.orders_held
    }
    #[getter]
    fn pending_orders(&self) -> i64 {
        self.core.pending_orders
    }
    fn __len__(&self) -> usize {
        self.core.n_sellers()
    }

    /// Decode, validate and apply one JSON event: its outcome code.
    fn apply(&mut self, data: &[u8]) -> u8 {
        self.core.apply_bytes(data)
    }

    /// `apply` over `lines[start:]`: one outcome code per line, stopping after the
    /// first UNSURE code (the caller applies that line and goes on after it).
    #[pyo3(signature = (lines, start=0))]
    fn apply_lines<'py>(&mut self, py: Python<'py>, lines: &Bound<'py, PyList>, start: usize)
                        -> PyResult<Bound<'py, PyBytes>> {
        let mut codes = Vec::with_capacity(lines.len().saturating_sub(start));
        for i in start..lines.len() {
            let item = lines.get_item(i)?;
            let b = item
                .downcast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("lines must be bytes"))?;
            let c = self.core.apply_bytes(b.as_bytes());
            codes.push(c);
            if c == core::UNSURE {
                break;
            }
        }
        Ok(PyBytes::new(py, &codes))
    }


    /// Whether one document is a valid event (decode_event's acceptance); None for
    /// one the core leaves to decode_event (repeated keys, deep nesting).
    fn is_valid(&self, data: &[u8]) -> Option<bool> {
        match json::decode_full(data) {
            Ok(_) => Some(true),
            Err(false) => Some(false),
            Err(true) => None,
        }
    }

    /// A Kafka message's events, decoded and validated (a single event or a JSON
    /// array of them); None when anything in it is invalid, or an array is empty.
    fn decode_message(&self, value: Bound<'_, PyBytes>) -> Option<Batch> {
        let data = value.as_bytes();
        let is_array = json::is_array(data);
        let ranges = if is_array {
            json::split_array(data).ok()?
        } else {
            vec![(0, data.len())]
        };
        let mut kinds = Vec::with_capacity(ranges.len());
        let mut sellers = Vec::with_capacity(ranges.len());
        for &(a, b) in &ranges {
            let ev = json::decode_full(&data[a..b]).ok()?;
            kinds.push(ev.kind as u8);
            sellers.push(s(&ev.seller_id));
        }
        Some(Batch { data: value.clone().unbind(), ranges, kinds, sellers, is_array })
    }

    /// Apply a decoded batch: one outcome code per event.
    fn apply_decoded<'py>(&mut self, py: Python<'py>, batch: &Batch) -> Bound<'py, PyBytes> {
        let data = batch.data.bind(py).as_bytes();
        let codes: Vec<u8> =
            batch.ranges.iter().map(|&(a, b)| self.core.apply_bytes(&data[a..b])).collect();
        PyBytes::new(py, &codes)
    }

    /// Move the clock (the façade refuses a fixed clock first).
    fn advance(&mut self, now: i64) {
        self.core.advance(now)
    }

    /// Held events rejected when they came due (ConflictingEvent), as JSON.
    fn take_deferred<'py>(&mut self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        std::mem::take(&mut self.core.deferred).iter().map(|b| PyBytes::new(py, b)).collect()
    }

    /// (seller, counts before as little-endian u32 [window][predicate]).
    fn take_touched<'py>(&mut self, py: Python<'py>) -> Vec<(String, Bound<'py, PyBytes>)> {
        self.core
            .take_touched()
            .into_iter()
            .map(|(id, c)| (s(&id), PyBytes::new(py, &le(&c))))
            .collect()
    }

    /// (seller, META dirty, purchase days dirty).
    fn take_dirty(&mut self) -> Vec<(String, bool, Vec<i64>)> {
        self.core.take_dirty().into_iter().map(|(id, d)| (s(&id), d.meta, d.days)).collect()
    }

    /// The dirty chunks so far, without taking them.
    fn peek_dirty(&self) -> Vec<(String, bool, Vec<i64>)> {
        self.core.dirty.items.iter().map(|(id, d)| (s(id), d.meta, d.days.clone())).collect()
    }

    fn take_freed(&mut self) -> Vec<String> {
        self.core.take_freed().iter().map(|id| s(id)).collect()
    }

    fn has_seller(&self, id: &str) -> bool {
        self.core.find_seller(id.as_bytes()).is_some()
    }

    /// Counts as little-endian u32 [window][predicate], or None.
    fn sums<'py>(&self, py: Python<'py>, id: &str) -> Option<Bound<'py, PyBytes>> {
        let si = self.core.find_seller(id.as_bytes())?;
        Some(PyBytes::new(py, &le(&self.core.counts(si))))
    }

    /// Sellers in creation order; with `counted`, only those with an order in the
    /// longest window (Engine.seller_ids).
    fn seller_ids(&self, counted: bool) -> Vec<String> {
        self.core
            .seller_slots()
            .into_iter()
            .filter(|&si| !counted || self.core.counts_last(si))
            .map(|si| s(self.core.sid(si)))
            .collect()
    }

    /// (day, key, Python-format record) of a seller's records, by key.
    fn records<'py>(&self, py: Python<'py>, id: &str, with_response: bool)
                    -> Option<Vec<(i64, Bound<'py, PyBytes>, Bound<'py, PyBytes>)>> {
        let si = self.core.find_seller(id.as_bytes())?;
        Some(
            self.core
                .records(si, with_response)
                .into_iter()
                .map(|(d, k, r)| (d, PyBytes::new(py, &k), PyBytes::new(py, &r)))
                .collect(),
        )
    }

    fn record<'py>(&self, py: Python<'py>, id: &str, key: &[u8]) -> Option<Bound<'py, PyBytes>> {
        let si = self.core.find_seller(id.as_bytes())?;
        self.core.record(si, key).map(|r| PyBytes::new(py, &r))
    }

    fn n_orders(&self, id: &str) -> usize {
        self.core
            .find_seller(id.as_bytes())
            .map_or(0, |si| self.core.sellers[si as usize].as_ref().unwrap().orders.len())
    }

    /// Ghosts the flush being written carries: (day, key, record).
    fn ghosts_out<'py>(&self, py: Python<'py>, id: &str)
                       -> Vec<(i64, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        self.core
            .ghosts_out
            .get(id.as_bytes())
            .map(|g| {
                g.iter()
                    .map(|(d, k, r)| (*d, PyBytes::new(py, k), PyBytes::new(py, r)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (has_orders, messages, held events, replies) of a seller, or None:
    /// messages as (id, occurred_at, order_id, counts, anchor_day, digests, asks) and
    /// replies as (question, at, anchor_day), each in dict order; held events as
    /// (occurred_at, seq, JSON) by (occurred_at, seq).
    #[allow(clippy::type_complexity)]
    fn meta<'py>(&self, py: Python<'py>, id: &str) -> Option<(
        bool,
        Vec<(String, i64, Option<String>, bool, i64, Bound<'py, PyBytes>, bool)>,
        Vec<(i64, u64, Bound<'py, PyBytes>)>,
        Vec<(String, i64, i64)>,
    )> {
        let si = self.core.find_seller(id.as_bytes())?;
        let sel = self.core.sellers[si as usize].as_ref().unwrap();
        let mut msgs = Vec::new();
        let mut fut = Vec::new();
        let mut reps = Vec::new();
        if let Some(e) = &sel.ext {
            let mut m: Vec<_> = e.messages.iter().collect();
            m.sort_by_key(|(_, m)| m.seq);
            for (k, m) in m {
                msgs.push((s(k), m.at, m.order_id.as_ref().map(|o| s(o)), m.counts, m.anchor,
                           PyBytes::new(py, &m.digests), m.asks));
            }
            let mut f: Vec<_> = e.future.iter().map(|r| &r.0).collect();
            f.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            for (at, seq, raw) in f {
                fut.push((*at, *seq, PyBytes::new(py, raw)));
            }
            let mut r: Vec<_> = e.replies.iter().collect();
            r.sort_by_key(|(_, r)| r.seq);
            for (k, r) in r {
                reps.push((s(k), r.at, r.anchor));
            }
        }
        Some((sel.has_orders, msgs, fut, reps))
    }

    /// (deadline, key hash) of a seller's timers, earliest first (diagnostics).
    fn timers(&self, id: &str) -> Vec<(i64, u64)> {
        let Some(si) = self.core.find_seller(id.as_bytes()) else { return vec![] };
        let sel = self.core.sellers[si as usize].as_ref().unwrap();
        let mut t: Vec<(i64, u64)> =
            sel.ext.as_ref().map_or(vec![], |e| e.timers.iter().map(|r| r.0).collect());
        t.sort();
        t
    }

    fn drop_seller(&mut self, id: &str) {
        self.core.drop_seller(id.as_bytes())
    }

    /// Engine._restore_seller from plain values (see core.rs).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn restore_seller(
        &mut self,
        id: &str,
        has_orders: bool,
        orders: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>,
        messages: Vec<(String, i64, Option<String>, bool, i64, Bound<'_, PyBytes>)>,
        asking: Vec<String>,
        replies: Vec<(String, i64, i64)>,
        future: Vec<Bound<'_, PyBytes>>,
    ) -> PyResult<()> {
        let orders = orders
            .iter()
            .map(|(k, r)| (k.as_bytes().to_vec(), r.as_bytes().to_vec()))
            .collect();
        let messages = messages
            .into_iter()
            .map(|(k, at, o, c, a, d)| (k.into_bytes(), at, o.map(|o| o.into_bytes()), c, a,
                                        d.as_bytes().to_vec()))
            .collect();
        let asking = asking.into_iter().map(|a| a.into_bytes()).collect();
        let replies = replies.into_iter().map(|(q, at, a)| (q.into_bytes(), at, a)).collect();
        let future = future.iter().map(|f| f.as_bytes().to_vec()).collect();
        self.core
            .restore_seller(id.as_bytes(), has_orders, orders, messages, asking, replies, future)
            .map_err(PyValueError::new_err)
    }

    /// Engine._mark (the façade's restore of ghost days).
    fn mark(&mut self, id: &str, day: Option<i64>) {
        if self.core.track_dirty {
            self.core.mark_pub(id.as_bytes(), day);
        }
    }

    fn memory_bytes(&self) -> usize {
        self.core.memory_bytes()
    }

    fn memory_breakdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.core.breakdown() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}

fn le(c: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(c.len() * 4);
    for v in c {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The 6-byte BLAKE2b digest of an event id (orders.event_digest), for tests.
#[pyfunction]
fn event_digest<'py>(py: Python<'py>, event_id: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &core::digest48(event_id))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCore>()?;
    m.add_class::<Batch>()?;
    m.add_function(wrap_pyfunction!(event_digest, m)?)?;
    m.add("OUTCOMES", ("applied", "pending", "duplicate", "held", "expired", "invalid",
                       "conflict", "too_far", "unsure"))?;
    Ok(())
}
