//! Herald's access pattern on three embedded engines, side by side:
//! group-committed durable appends keyed by sequence (10% with a client id),
//! range scans by sequence, lookups by id, retention deletes from the
//! front, file size under a steady append+delete loop, and reopen time.
//!
//! `cargo run --release -- /tmp/store-compare` (each engine gets a subdir).

use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};
use std::time::Instant;

const EVENTS: u64 = 200_000;
const BATCH: u64 = 64;
const PAYLOAD: usize = 300;

trait Engine {
    fn name(&self) -> &'static str;
    fn append(&mut self, batch: &[(u64, Option<String>, Vec<u8>)], durable: bool);
    fn scan(&self, from: u64, n: usize) -> usize;
    fn lookup(&self, id: &str) -> Option<u64>;
    fn delete_through(&mut self, seq: u64);
}

fn event(seq: u64) -> (u64, Option<String>, Vec<u8>) {
    let id = (seq % 10 == 0).then(|| format!("client-{seq}"));
    (seq, id, vec![b'x'; PAYLOAD])
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let m = e.metadata().ok();
                    if m.as_ref().is_some_and(|m| m.is_dir()) {
                        dir_size(&e.path())
                    } else {
                        m.map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

// --- redb -------------------------------------------------------------
mod redb_engine {
    use super::*;
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};
    const EV: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
    const IDS: TableDefinition<&str, u64> = TableDefinition::new("ids");
    pub struct R(pub Database);
    pub fn open(dir: &Path) -> R {
        std::fs::create_dir_all(dir).unwrap();
        R(Database::create(dir.join("db.redb")).unwrap())
    }
    impl Engine for R {
        fn name(&self) -> &'static str {
            "redb 4"
        }
        fn append(&mut self, batch: &[(u64, Option<String>, Vec<u8>)], durable: bool) {
            let mut tx = self.0.begin_write().unwrap();
            tx.set_durability(if durable { Durability::Immediate } else { Durability::None }).unwrap();
            {
                let mut ev = tx.open_table(EV).unwrap();
                let mut ids = tx.open_table(IDS).unwrap();
                for (seq, id, data) in batch {
                    ev.insert(*seq, data.as_slice()).unwrap();
                    if let Some(id) = id {
                        ids.insert(id.as_str(), *seq).unwrap();
                    }
                }
            }
            tx.commit().unwrap();
        }
        fn scan(&self, from: u64, n: usize) -> usize {
            let r = self.0.begin_read().unwrap();
            let t = r.open_table(EV).unwrap();
            t.range(from..).unwrap().take(n).map(|x| x.unwrap().1.value().len()).count()
        }
        fn lookup(&self, id: &str) -> Option<u64> {
            let r = self.0.begin_read().unwrap();
            let t = r.open_table(IDS).unwrap();
            t.get(id).unwrap().map(|v| v.value())
        }
        fn delete_through(&mut self, seq: u64) {
            let tx = self.0.begin_write().unwrap();
            {
                let mut ev = tx.open_table(EV).unwrap();
                ev.retain_in(..=seq, |_, _| false).unwrap();
            }
            tx.commit().unwrap();
        }
    }
}

// --- fjall --------------------------------------------------------------
mod fjall_engine {
    use super::*;
    use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};
    pub struct F(pub Keyspace, pub PartitionHandle, pub PartitionHandle);
    pub fn open(dir: &Path) -> F {
        let ks = Config::new(dir).open().unwrap();
        let ev = ks.open_partition("events", PartitionCreateOptions::default()).unwrap();
        let ids = ks.open_partition("ids", PartitionCreateOptions::default()).unwrap();
        F(ks, ev, ids)
    }
    impl Engine for F {
        fn name(&self) -> &'static str {
            "fjall 2"
        }
        fn append(&mut self, batch: &[(u64, Option<String>, Vec<u8>)], durable: bool) {
            let mut b = self.0.batch();
            for (seq, id, data) in batch {
                b.insert(&self.1, seq.to_be_bytes(), data.as_slice());
                if let Some(id) = id {
                    b.insert(&self.2, id.as_bytes(), seq.to_be_bytes());
                }
            }
            b.commit().unwrap();
            if durable {
                self.0.persist(PersistMode::SyncAll).unwrap();
            }
        }
        fn scan(&self, from: u64, n: usize) -> usize {
            self.1.range(from.to_be_bytes()..).take(n).map(|x| x.unwrap().1.len()).count()
        }
        fn lookup(&self, id: &str) -> Option<u64> {
            self.2.get(id.as_bytes()).unwrap().map(|v| u64::from_be_bytes(v[..8].try_into().unwrap()))
        }
        fn delete_through(&mut self, seq: u64) {
            let keys: Vec<_> = self.1.range(..=seq.to_be_bytes()).map(|x| x.unwrap().0).collect();
            let mut b = self.0.batch();
            for k in keys {
                b.remove(&self.1, k);
            }
            b.commit().unwrap();
        }
    }
}

// --- SQLite -------------------------------------------------------------
mod sqlite_engine {
    use super::*;
    use rusqlite::{params, Connection};
    pub struct S(pub Connection);
    pub fn open(dir: &Path) -> S {
        std::fs::create_dir_all(dir).unwrap();
        let c = Connection::open(dir.join("db.sqlite")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, id TEXT, data BLOB);
             CREATE INDEX IF NOT EXISTS ids ON events(id) WHERE id IS NOT NULL;",
        )
        .unwrap();
        S(c)
    }
    impl Engine for S {
        fn name(&self) -> &'static str {
            "SQLite (rusqlite, WAL)"
        }
        fn append(&mut self, batch: &[(u64, Option<String>, Vec<u8>)], durable: bool) {
            self.0.execute_batch(if durable { "PRAGMA synchronous=FULL" } else { "PRAGMA synchronous=OFF" }).unwrap();
            let tx = self.0.transaction().unwrap();
            {
                let mut st = tx.prepare_cached("INSERT INTO events(seq, id, data) VALUES (?1, ?2, ?3)").unwrap();
                for (seq, id, data) in batch {
                    st.execute(params![*seq as i64, id, data]).unwrap();
                }
            }
            tx.commit().unwrap();
        }
        fn scan(&self, from: u64, n: usize) -> usize {
            let mut st = self.0.prepare_cached("SELECT data FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2").unwrap();
            st.query_map(params![from as i64, n as i64], |r| r.get::<_, Vec<u8>>(0)).unwrap().count()
        }
        fn lookup(&self, id: &str) -> Option<u64> {
            self.0.query_row("SELECT seq FROM events WHERE id = ?1", params![id], |r| r.get::<_, i64>(0)).ok().map(|v| v as u64)
        }
        fn delete_through(&mut self, seq: u64) {
            self.0.execute("DELETE FROM events WHERE seq <= ?1", params![seq as i64]).unwrap();
        }
    }
}

fn run(mut e: Box<dyn Engine>, dir: &Path, reopen: &dyn Fn() -> Box<dyn Engine>) -> Vec<String> {
    let mut commit = Histogram::<u64>::new(3).unwrap();
    let t = Instant::now();
    let mut seq = 1;
    while seq <= EVENTS {
        let batch: Vec<_> = (seq..seq + BATCH).map(event).collect();
        let c = Instant::now();
        e.append(&batch, true);
        commit.record(c.elapsed().as_micros() as u64).unwrap();
        seq += BATCH;
    }
    let durable_rate = EVENTS as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut s2 = seq;
    while s2 < seq + EVENTS {
        let batch: Vec<_> = (s2..s2 + BATCH).map(event).collect();
        e.append(&batch, false);
        s2 += BATCH;
    }
    let nosync_rate = EVENTS as f64 / t.elapsed().as_secs_f64();
    let head = s2 - 1;
    let t = Instant::now();
    let mut read = 0;
    for _ in 0..200 {
        read += e.scan(1 + rand::random::<u64>() % (head - 1000), 1000);
    }
    let scan_rate = read as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..20_000 {
        let s = (rand::random::<u64>() % (head / 10)) * 10 + 10;
        found += e.lookup(&format!("client-{s}")).is_some() as u32;
    }
    let lookup_rate = 20_000.0 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    e.delete_through(50_000);
    let delete_ms = t.elapsed().as_secs_f64() * 1000.0;
    // Steady state: keep 100k while appending 300k more.
    let size_before = dir_size(dir);
    let mut low = 50_000;
    let mut next = head + 1;
    for _ in 0..(300_000 / BATCH) {
        let batch: Vec<_> = (next..next + BATCH).map(event).collect();
        e.append(&batch, false);
        next += BATCH;
        if next - low > 100_000 + 10_000 {
            low = next - 100_000;
            e.delete_through(low);
        }
    }
    e.append(&[event(next)], true);
    let size_after = dir_size(dir);
    drop(e);
    let t = Instant::now();
    let e2 = reopen();
    let _ = e2.scan(next - 10, 10);
    let reopen_ms = t.elapsed().as_secs_f64() * 1000.0;
    vec![
        e2.name().to_string(),
        format!("{durable_rate:.0}"),
        format!("{:.2} / {:.2}", commit.value_at_quantile(0.5) as f64 / 1000.0, commit.value_at_quantile(0.99) as f64 / 1000.0),
        format!("{nosync_rate:.0}"),
        format!("{scan_rate:.0}"),
        format!("{lookup_rate:.0} ({found} hits)"),
        format!("{delete_ms:.1}"),
        format!("{:.1} → {:.1}", size_before as f64 / 1e6, size_after as f64 / 1e6),
        format!("{reopen_ms:.1}"),
    ]
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/store-compare".into()));
    let _ = std::fs::remove_dir_all(&root);
    println!("| engine | durable appends/s (batches of {BATCH}) | commit p50 / p99 ms | appends/s without fsync | scan events/s | id lookups/s | delete 50k oldest ms | MB before → after 300k more with 100k kept | reopen ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let d = root.join("redb");
    let row = run(Box::new(redb_engine::open(&d)), &d, &|| Box::new(redb_engine::open(&root.join("redb"))));
    println!("| {} |", row.join(" | "));
    let d = root.join("fjall");
    let row = run(Box::new(fjall_engine::open(&d)), &d, &|| Box::new(fjall_engine::open(&root.join("fjall"))));
    println!("| {} |", row.join(" | "));
    let d = root.join("sqlite");
    let row = run(Box::new(sqlite_engine::open(&d)), &d, &|| Box::new(sqlite_engine::open(&root.join("sqlite"))));
    println!("| {} |", row.join(" | "));
}
