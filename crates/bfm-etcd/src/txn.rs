//! Typed requests: key ranges, range options, compares and transactions, and their responses.

use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb::KeyValue;

/// Which keys a read or a delete covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    One(Vec<u8>),
    /// Every key starting with these bytes (the empty prefix: every key).
    Prefix(Vec<u8>),
    /// `[start, end)`; an `end` of `[0]` is the end of the keyspace.
    Range {
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

impl Keys {
    pub fn key(key: impl Into<Vec<u8>>) -> Keys {
        Keys::One(key.into())
    }

    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Keys {
        Keys::Prefix(prefix.into())
    }

    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Keys {
        Keys::Range { start: start.into(), end: end.into() }
    }

    /// etcd's `(key, range_end)`: an empty `range_end` means the key alone.
    pub(crate) fn bounds(self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Keys::One(k) => (k, Vec::new()),
            Keys::Prefix(p) => {
                let end = prefix_end(&p);
                (p, end)
            }
            Keys::Range { start, end } => (start, end),
        }
    }
}

/// The end of the key range that has `prefix` as prefix (etcd's `range_end`): the prefix with its
/// last byte below 0xff incremented; `[0]` (the end of the keyspace) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// What a range read returns besides the keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOptions {
    pub keys_only: bool,
    pub count_only: bool,
    /// At most this many keys (0: no limit).
    pub limit: i64,
}

impl RangeOptions {
    pub fn keys_only() -> Self {
        RangeOptions { keys_only: true, ..Default::default() }
    }

    pub fn count_only() -> Self {
        RangeOptions { count_only: true, ..Default::default() }
    }

    pub(crate) fn request(self, keys: Keys) -> pb::RangeRequest {
        let (key, range_end) = keys.bounds();
        pb::RangeRequest { key, range_end, limit: self.limit, keys_only: self.keys_only, count_only: self.count_only, ..Default::default() }
    }
}

/// The answer to a range read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    /// In key order; empty for a count-only read.
    pub kvs: Vec<KeyValue>,
    /// How many keys the range holds (whatever the limit).
    pub count: i64,
    /// More keys than the limit let through.
    pub more: bool,
}

impl From<pb::RangeResponse> for RangeResult {
    fn from(r: pb::RangeResponse) -> Self {
        RangeResult { kvs: r.kvs, count: r.count, more: r.more }
    }
}

/// How a compare relates the key's field to the given value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    Greater,
    Less,
    NotEqual,
}

impl From<CompareOp> for pb::compare::CompareResult {
    fn from(op: CompareOp) -> Self {
        match op {
            CompareOp::Equal => pb::compare::CompareResult::Equal,
            CompareOp::Greater => pb::compare::CompareResult::Greater,
            CompareOp::Less => pb::compare::CompareResult::Less,
            CompareOp::NotEqual => pb::compare::CompareResult::NotEqual,
        }
    }
}

/// One condition of a transaction. A key that does not exist has version, create and mod
/// revision 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(pb::Compare);

impl Compare {
    fn new(key: impl Into<Vec<u8>>, op: CompareOp, target: pb::compare::CompareTarget, union: pb::compare::TargetUnion) -> Compare {
        Compare(pb::Compare {
            result: pb::compare::CompareResult::from(op) as i32,
            target: target as i32,
            key: key.into(),
            target_union: Some(union),
            range_end: Vec::new(),
        })
    }

    /// The key's version (number of writes since its creation; 0 when absent).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Compare {
        Compare::new(key, op, pb::compare::CompareTarget::Version, pb::compare::TargetUnion::Version(version))
    }

    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(key, op, pb::compare::CompareTarget::Create, pb::compare::TargetUnion::CreateRevision(revision))
    }

    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Compare {
        Compare::new(key, op, pb::compare::CompareTarget::Mod, pb::compare::TargetUnion::ModRevision(revision))
    }

    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Compare {
        Compare::new(key, op, pb::compare::CompareTarget::Value, pb::compare::TargetUnion::Value(value.into()))
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOp(pb::RequestOp);

impl TxnOp {
    pub fn get(keys: Keys, options: RangeOptions) -> TxnOp {
        TxnOp(pb::RequestOp { request: Some(pb::request_op::Request::RequestRange(options.request(keys))) })
    }

    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> TxnOp {
        let put = pb::PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        TxnOp(pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(put)) })
    }

    pub fn delete(keys: Keys) -> TxnOp {
        let (key, range_end) = keys.bounds();
        let delete = pb::DeleteRangeRequest { key, range_end, prev_kv: false };
        TxnOp(pb::RequestOp { request: Some(pb::request_op::Request::RequestDeleteRange(delete)) })
    }
}

/// A transaction: if every compare holds, the `and_then` operations run, else the `or_else`
/// ones — atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    compare: Vec<Compare>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.compare.extend(compares);
        self
    }

    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.success.extend(ops);
        self
    }

    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Txn {
        self.failure.extend(ops);
        self
    }

    pub(crate) fn request(self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compare.into_iter().map(|c| c.0).collect(),
            success: self.success.into_iter().map(|o| o.0).collect(),
            failure: self.failure.into_iter().map(|o| o.0).collect(),
        }
    }
}

/// The answer to a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnResponse {
    /// Whether every compare held (and so the `and_then` branch ran).
    pub succeeded: bool,
    /// One per operation of the branch that ran, in order.
    pub responses: Vec<TxnOpResponse>,
}

/// The answer to one operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnOpResponse {
    Range(RangeResult),
    Put,
    Delete { deleted: i64 },
    Txn(TxnResponse),
}

impl From<pb::TxnResponse> for TxnResponse {
    fn from(r: pb::TxnResponse) -> Self {
        let responses = r
            .responses
            .into_iter()
            .filter_map(|op| {
                Some(match op.response? {
                    pb::response_op::Response::ResponseRange(r) => TxnOpResponse::Range(r.into()),
                    pb::response_op::Response::ResponsePut(_) => TxnOpResponse::Put,
                    pb::response_op::Response::ResponseDeleteRange(d) => TxnOpResponse::Delete { deleted: d.deleted },
                    pb::response_op::Response::ResponseTxn(t) => TxnOpResponse::Txn(t.into()),
                })
            })
            .collect();
        TxnResponse { succeeded: r.succeeded, responses }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_ranges() {
        assert_eq!(prefix_end(b"/p/a"), b"/p/b".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff, 0xff]), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
        assert_eq!(Keys::prefix("ab").bounds(), (b"ab".to_vec(), b"ac".to_vec()));
        assert_eq!(Keys::key("ab").bounds(), (b"ab".to_vec(), Vec::new()));
        assert_eq!(Keys::range("a", "c").bounds(), (b"a".to_vec(), b"c".to_vec()));
    }

    #[test]
    fn compares_carry_their_target() {
        let c = Compare::mod_revision("k", CompareOp::Equal, 7).0;
        assert_eq!((c.target, c.result), (pb::compare::CompareTarget::Mod as i32, pb::compare::CompareResult::Equal as i32));
        assert_eq!(c.target_union, Some(pb::compare::TargetUnion::ModRevision(7)));
        let c = Compare::version("k", CompareOp::Greater, 0).0;
        assert_eq!((c.target, c.result), (pb::compare::CompareTarget::Version as i32, pb::compare::CompareResult::Greater as i32));
        let t = Txn::new().when([Compare::value("k", CompareOp::NotEqual, "v")]).and_then([TxnOp::put("k", "v")]).request();
        assert_eq!((t.compare.len(), t.success.len(), t.failure.len()), (1, 1, 0));
    }
}
