//! The store's own invariants, on real files: damaged records skipped
//! alone, format migration, retained slots bounded per tenant.

use super::*;
use crate::audit::Window;
use herald_core::{Limits, SessionKey};
use serde_json::json;

fn config(path: &Path) -> StoreConfig {
    StoreConfig {
        path: path.to_path_buf(),
        fsync: FsyncPolicy::Always,
        max_events: 1000,
        max_age_ms: 0,
        max_bytes: 0,
        max_audit: 1000,
        cache_bytes: 1 << 20,
        retained_per_tenant: 100,
    }
}

fn draft(v: serde_json::Value) -> EventDraft {
    EventDraft::from_json(&v, &SessionKey::new([0; 32]), &Limits::default()).unwrap()
}

fn seqs(page: &Page) -> Vec<u64> {
    page.events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn an_unreadable_record_is_skipped_alone_never_the_events_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    {
        let store = Store::open(config(&path)).unwrap();
        for i in 0..5 {
            store
                .append(vec![draft(json!({"topic": "t", "data": i, "audience": "public"}))], 0)
                .await
                .unwrap();
        }
        store.close().await;
    }
    // Damage record 3's bytes (the page checksums stay intact: the
    // record itself no longer decodes).
    {
        // The writer thread lets go of the file once it sees the store
        // dropped.
        let mut db = Database::open(&path);
        for _ in 0..100 {
            if db.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            db = Database::open(&path);
        }
        let db = db.unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(EVENTS)
            .unwrap()
            .insert(3, b"not an event".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(config(&path)).unwrap();
    let all = store.since(0, 1000).await;
    assert_eq!(seqs(&all), vec![1, 2, 4, 5]);
    assert_eq!(all.skipped, vec![3]);
    assert!(!all.more);
    // A page that ends on the damaged record reaches exactly it: the
    // next page starts after it, at 4, not at the head.
    let first = store.since(0, 3).await;
    assert_eq!((seqs(&first), first.head, first.more), (vec![1, 2], 3, true));
    let next = store.since(first.head, 3).await;
    assert_eq!(seqs(&next), vec![4, 5]);
}

#[tokio::test]
async fn a_format_1_file_is_migrated_to_tenant_scoped_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let acme = draft(json!({"topic": "t", "data": "a", "audience": {"tenant": "acme"}, "id": "ord-1", "retain": true}))
        .into_event(1, 0);
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let encoded = codec::encode_event(&acme);
            txn.open_table(EVENTS).unwrap().insert(1, encoded.as_slice()).unwrap();
            txn.open_table(IDS).unwrap().insert("ord-1", 1).unwrap();
            txn.open_table(RETAINED)
                .unwrap()
                .insert("t", encoded.as_slice())
                .unwrap();
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("format", 1).unwrap();
            meta.insert("head", 1).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(config(&path)).unwrap();
    let id = LastEventId::Client("ord-1".into());
    assert_eq!(store.resolve(&id, Some("acme")).await, Ok(ResumePoint::After(1)));
    assert_eq!(store.resolve(&id, Some("globex")).await, Ok(ResumePoint::Reset));
    let exact = SelectorSet::parse(["t"]).unwrap();
    assert_eq!(seqs(&store.retained(Some("acme"), &exact).await), vec![1]);
    assert!(store.retained(Some("globex"), &exact).await.events.is_empty());
    // The same id in another tenant is not a duplicate; in acme it is.
    store
        .append(
            vec![draft(
                json!({"topic": "t", "data": "g", "audience": {"tenant": "globex"}, "id": "ord-1"}),
            )],
            0,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .append(
                vec![draft(
                    json!({"topic": "t", "data": "a", "audience": {"tenant": "acme"}, "id": "ord-1"})
                )],
                0
            )
            .await,
        Err(HistoryError::DuplicateId(_))
    ));
}

#[tokio::test]
async fn retained_slots_are_bounded_per_tenant_and_kept_per_audience() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let mut c = config(&path);
    c.retained_per_tenant = 2;
    let store = Store::open(c).unwrap();
    let retain = |topic: &str, audience: serde_json::Value| {
        draft(json!({"topic": topic, "data": topic, "audience": audience, "retain": true}))
    };
    store
        .append(vec![retain("a", json!({"tenant": "acme"}))], 0)
        .await
        .unwrap();
    store
        .append(vec![retain("a", json!({"tenant": "acme", "users": ["alice"]}))], 0)
        .await
        .unwrap();
    store
        .append(vec![retain("a", json!({"tenant": "globex"}))], 0)
        .await
        .unwrap();
    let all = SelectorSet::all();
    // Both acme audiences keep their slot; globex's did not replace them.
    assert_eq!(seqs(&store.retained(Some("acme"), &all).await), vec![1, 2]);
    store
        .append(vec![retain("b", json!({"tenant": "acme"}))], 0)
        .await
        .unwrap();
    // Past the bound, one of acme's slots gives way, not globex's: the
    // restricted one (alice's) before the tenant-wide state.
    assert_eq!(seqs(&store.retained(Some("acme"), &all).await), vec![1, 4]);
    assert_eq!(seqs(&store.retained(Some("globex"), &all).await), vec![3]);
    store.close().await;
}

#[tokio::test]
async fn audit_pages_read_through_the_store_once_memory_lets_go_of_older_records() {
    use crate::audit::{AuditEntry, AuditLog};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let store = Store::open(config(&path)).unwrap();
    // Memory holds the newest 3 committed records; the store all of them.
    let log = AuditLog::with_archive(1000, 3, store.clone());
    let record = |i: u32| {
        log.record(
            AuditEntry {
                kind: "admin_action",
                tenant: Some(if i % 2 == 0 { "acme" } else { "globex" }.into()),
                detail: json!({ "n": i }),
                ..AuditEntry::default()
            },
            0,
        )
        .id
    };
    let mut ids: Vec<u64> = (0..10).map(record).collect();
    store.flush().await;
    // One more record lets go of what is committed beyond the newest 3.
    ids.push(record(10));
    let all = |_: &crate::audit::AuditRecord| true;
    let page: Vec<u64> = log
        .page(0, Window::unbounded(usize::MAX), None, all)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, ids, "every record, once, in order, across store and memory");
    let page: Vec<u64> = log
        .page(ids[2], Window::unbounded(4), None, all)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, ids[3..7]);
    let back: Vec<u64> = log
        .page_before(ids[9], Window::unbounded(5), None, all)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(back, ids[4..9]);
    let acme: Vec<u64> = log
        .page(0, Window::unbounded(usize::MAX), None, |r| {
            r.tenant.as_deref() == Some("acme")
        })
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        acme,
        ids.iter().copied().step_by(2).collect::<Vec<_>>(),
        "filters apply to stored records too"
    );
    let held_back: Vec<u64> = log
        .page_before(u64::MAX, Window::unbounded(2), None, all)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(held_back, ids[9..]);
    store.close().await;
}

#[tokio::test]
async fn audit_records_not_yet_committed_stay_readable() {
    use crate::audit::{AuditEntry, AuditLog};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let store = Store::open(config(&path)).unwrap();
    let log = AuditLog::with_archive(1000, 1, store.clone());
    let ids: Vec<u64> = (0..50)
        .map(|_| {
            log.record(
                AuditEntry {
                    kind: "admin_action",
                    ..AuditEntry::default()
                },
                0,
            )
            .id
        })
        .collect();
    // Read at once, while the writer may still be committing: each record
    // is either still held or already stored, never neither.
    let page: Vec<u64> = log
        .page(0, Window::unbounded(usize::MAX), None, |_| true)
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(page, ids);
    store.close().await;
}

/// Follows `page`'s cursor from the start (forward) or the newest (back)
/// until a page is neither full nor partial: what a client paging a rare
/// filter sees, page by page.
fn walk(
    log: &crate::audit::AuditLog,
    window: Window,
    tenant: Option<&str>,
    back: bool,
    wanted: &dyn Fn(&AuditRecord) -> bool,
) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut at = if back { u64::MAX } else { 0 };
    for _ in 0..100 {
        let page = if back {
            log.page_before(at, window, tenant, wanted).unwrap()
        } else {
            log.page(at, window, tenant, wanted).unwrap()
        };
        let ids: Vec<u64> = page.records.iter().map(|r| r.id).collect();
        let full = ids.len() == window.limit;
        at = match (back, page.stopped_at) {
            (_, Some(stop)) => stop,
            (false, None) => ids.last().copied().unwrap_or(at),
            (true, None) => ids.first().copied().unwrap_or(0),
        };
        pages.push(ids);
        if page.stopped_at.is_none() && !full {
            return pages;
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn an_audit_page_looks_at_a_bounded_number_of_records_and_the_cursor_goes_on_from_there() {
    use crate::audit::{AuditEntry, AuditLog};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let store = Store::open(config(&path)).unwrap();
    // Memory keeps the newest 5 committed records; older ones are read
    // from the store, so the scan bound is met in both.
    let log = AuditLog::with_archive(1000, 5, store.clone());
    let rare = [3usize, 17, 28];
    let ids: Vec<u64> = (0..30)
        .map(|i| {
            log.record(
                AuditEntry {
                    kind: "admin_action",
                    tenant: Some(if rare.contains(&i) { "acme" } else { "globex" }.into()),
                    ..AuditEntry::default()
                },
                0,
            )
            .id
        })
        .collect();
    store.flush().await;
    log.record(
        AuditEntry {
            kind: "admin_action",
            ..AuditEntry::default()
        },
        0,
    );
    let acme = |r: &AuditRecord| r.tenant.as_deref() == Some("acme");
    let window = Window { limit: 10, scan: 4 };

    // The first page looks at four records, finds the one at 3, and stops:
    // the next page starts after the last record examined.
    let first = log.page(0, window, None, acme).unwrap();
    assert_eq!(first.records.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[3]]);
    assert_eq!(first.stopped_at, Some(ids[3]));
    let second = log.page(ids[3], window, None, acme).unwrap();
    assert!(second.records.is_empty());
    assert_eq!(second.stopped_at, Some(ids[7]), "four more looked at, none matching");

    // Forward and back, the pages together hold every match once, in order.
    let wanted: Vec<u64> = rare.iter().map(|&i| ids[i]).collect();
    let forward: Vec<u64> = walk(&log, window, None, false, &acme).concat();
    assert_eq!(forward, wanted);
    let mut back: Vec<Vec<u64>> = walk(&log, window, None, true, &acme);
    back.reverse();
    assert_eq!(back.concat(), wanted);

    // A filter that matches often fills its page before the bound, and a
    // page that reaches the end of the log is not partial.
    let all = |_: &AuditRecord| true;
    let full = log.page(0, Window { limit: 3, scan: 4 }, None, all).unwrap();
    assert_eq!(full.records.len(), 3);
    assert_eq!(full.stopped_at, None);
    let tail = log.page(ids[28], window, None, acme).unwrap();
    assert_eq!(tail.stopped_at, None, "nothing left to look at");

    // Read as one tenant's, through the store's tenant index: only acme's
    // records are examined, so the three fit one page, and a page that
    // does stop names one of acme's ids, never another tenant's.
    let scoped = log.page(0, window, Some("acme"), acme).unwrap();
    assert_eq!(scoped.records.iter().map(|r| r.id).collect::<Vec<_>>(), wanted);
    assert_eq!(scoped.stopped_at, None);
    let back = log.page_before(u64::MAX, window, Some("acme"), acme).unwrap();
    assert_eq!(back.records.iter().map(|r| r.id).collect::<Vec<_>>(), wanted);
    let tight = Window { limit: 10, scan: 1 };
    let none = |_: &AuditRecord| false;
    let stops: Vec<u64> = walk(&log, tight, Some("acme"), false, &none)
        .iter()
        .map(|p| p.len() as u64)
        .collect();
    assert!(stops.iter().all(|n| *n == 0));
    let first = log.page(0, tight, Some("acme"), none).unwrap();
    assert_eq!(first.stopped_at, Some(ids[3]), "the stop is acme's own record");
    let next = log.page(ids[3], tight, Some("acme"), none).unwrap();
    // acme's last two: one in the store, one in memory, each source within
    // its own bound, and nothing after them.
    assert_eq!(next.stopped_at, None);
    let back = log.page_before(u64::MAX, tight, Some("acme"), none).unwrap();
    // Back: 28 is in memory, alone there; the store's part stops at 17.
    assert_eq!(back.stopped_at, Some(ids[17]));

    // Memory alone (no store) keeps the same bound.
    let memory = AuditLog::new(100);
    let ids: Vec<u64> = (0..12)
        .map(|i| {
            let tenant = (i == 9).then(|| "acme".to_string());
            memory
                .record(
                    AuditEntry {
                        kind: "admin_action",
                        tenant,
                        ..AuditEntry::default()
                    },
                    0,
                )
                .id
        })
        .collect();
    let page = memory.page(0, window, None, acme).unwrap();
    assert!(page.records.is_empty());
    assert_eq!(page.stopped_at, Some(ids[3]));
    assert_eq!(walk(&memory, window, None, false, &acme).concat(), vec![ids[9]]);
    assert_eq!(walk(&memory, window, None, true, &acme).concat(), vec![ids[9]]);
    store.close().await;
}

#[tokio::test]
async fn a_format_2_file_gets_its_audit_records_indexed_by_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    // As a build before the index wrote it: records, format 2, no index.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut audit = txn.open_table(AUDIT).unwrap();
            for (id, tenant) in [(10, Some("acme")), (11, Some("globex")), (12, None), (13, Some("acme"))] {
                let rec = json!({"id": id, "time_ms": 0, "kind": "admin_action", "tenant": tenant, "detail": {}});
                audit.insert(id, serde_json::to_vec(&rec).unwrap().as_slice()).unwrap();
            }
            txn.open_table(META).unwrap().insert("format", 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(config(&path)).unwrap();
    let read = |tenant| {
        let page = store
            .read_audit(0, u64::MAX, Window::unbounded(10), tenant, false, &|_| true)
            .unwrap();
        page.records.iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(read(Some("acme")), vec![10, 13]);
    assert_eq!(read(Some("globex")), vec![11]);
    assert_eq!(read(None), vec![10, 11, 12, 13]);
    assert_eq!(meta(&store.db, "format").unwrap(), Some(FORMAT));
    store.close().await;
}
