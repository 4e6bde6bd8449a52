//! Any bytes on an IPC socket: the attribute-list codec reads a message or
//! says why not (never panics, never more than its cap), a message it read
//! is written back as bytes that read the same, and every socket's typed
//! decoder either refuses it or gives a request that encodes and decodes
//! to itself. A message read from memory in one pass reads the same, or
//! fails the same way, as one read line by line through a one-byte buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_shared::ipc::policy::{Query, Verdict};
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::{
    ControlRequest, MasterRequest, Outcome, RouterRequest, UpdaterReply, UpdaterRequest,
    WorkerRequest,
};

fn same(a: &Attrs) -> Attrs {
    let bytes = a.encode().expect("a decoded message encodes");
    proto::decode(&bytes)
        .expect("what was encoded decodes")
        .expect("a whole message")
}

/// `data` read one byte per read: the codec's line-by-line path.
fn decode_byte_by_byte(data: &[u8]) -> Result<Option<Attrs>, proto::ProtoError> {
    use std::future::Future;
    let mut r = tokio::io::BufReader::with_capacity(1, data);
    let fut = std::pin::pin!(proto::read(&mut r));
    match fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => panic!("a slice never waits"),
    }
}

fuzz_target!(|data: &[u8]| {
    let decoded = proto::decode(data);
    assert_eq!(
        format!("{decoded:?}"),
        format!("{:?}", decode_byte_by_byte(data)),
        "the one-pass and line-by-line reads differ"
    );
    let Ok(Some(msg)) = decoded else {
        return;
    };
    assert_eq!(same(&msg), msg, "the codec does not round-trip");

    if let Ok(r) = RouterRequest::decode(&msg) {
        let again = RouterRequest::decode(&same(&r.encode())).expect("re-decodes");
        assert_eq!(again, r);
    }
    if let Ok(r) = UpdaterRequest::decode(msg.clone()) {
        let again = UpdaterRequest::decode(same(&r.clone().encode())).expect("re-decodes");
        assert_eq!(again, r);
    }
    if let Ok(r) = MasterRequest::decode(msg.clone()) {
        let again = MasterRequest::decode(same(&r.clone().encode())).expect("re-decodes");
        assert_eq!(again, r);
    }
    if let Ok(r) = WorkerRequest::decode(&msg) {
        let again = WorkerRequest::decode(&same(&r.encode())).expect("re-decodes");
        assert_eq!(again, r);
    }
    if let Ok(r) = ControlRequest::decode(&msg) {
        let again = ControlRequest::decode(&same(&r.encode())).expect("re-decodes");
        assert_eq!(again, r);
    }
    if let Some(o) = Outcome::of(&msg) {
        assert_eq!(Outcome::of(&same(&o.reply(msg.get("id")))), Some(o));
    }
    if let Some(r) = UpdaterReply::decode(&msg) {
        let _ = UpdaterReply::decode(&same(&r.encode()));
    }
    if let Ok(q) = Query::from_attrs(&msg) {
        let again = Query::from_attrs(&same(&q.to_attrs())).expect("re-decodes");
        assert_eq!(again, q);
    }
    if let Some(v) = Verdict::from_attrs(&msg) {
        let again = Verdict::from_attrs(&same(&v.to_attrs("1"))).expect("re-decodes");
        assert_eq!(again, v);
    }
});
