//! The store's single writer: one thread owns every write, takes
//! everything queued, writes it in one transaction and commits once (group
//! commit), then hands the events to the sink and answers the publishers.
//! Retention, retained-slot bounds and expiry run inside the same
//! transactions, so the file stays bounded.

use super::*;

/// The single writer.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) shared: Arc<Shared>,
    pub(super) config: StoreConfig,
    pub(super) last_durable: Instant,
    pub(super) dirty: bool,
    /// Durable upper bound of sequence numbers handed out (non-`always`
    /// policies only).
    pub(super) reserved: u64,
    pub(super) last_sweep: Instant,
    /// The retained slots and their per-tenant bound.
    pub(super) slots: RetainedIndex,
    /// Audit records of commits that failed, in the order they were
    /// queued: the next commit writes them first. The audit log holds a
    /// record in memory until the count of committed records reaches it,
    /// so a record skipped here would be lost from both.
    pub(super) unwritten_audit: Vec<(Vec<u8>, u64, Option<String>)>,
}

type Reply = (
    oneshot::Sender<Result<Vec<Arc<Event>>, HistoryError>>,
    Result<Vec<Arc<Event>>, HistoryError>,
);

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Job>) {
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.commit_batch(Vec::new(), true, false);
                    return;
                }
            };
            let mut jobs: Vec<Job> = first.into_iter().collect();
            // Group commit: everything already queued shares this commit.
            while jobs.len() < 1024 {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let force = jobs.iter().any(|j| matches!(j, Job::Flush(_) | Job::Close(_)));
            let due = match self.config.fsync {
                FsyncPolicy::Always => false,
                FsyncPolicy::Interval(d) => self.dirty && self.last_durable.elapsed() >= d,
                FsyncPolicy::Never => self.dirty && self.last_durable.elapsed() >= Duration::from_secs(1),
            };
            let sweep = self.last_sweep.elapsed() >= Duration::from_secs(1);
            if jobs.is_empty() && !due && !sweep {
                continue;
            }
            if sweep {
                self.last_sweep = Instant::now();
            }
            if let Err(e) = self.commit_batch(jobs, force || due, sweep) {
                tracing::error!(error = %e, "store commit failed");
            }
        }
    }

    /// Writes one batch in one transaction, commits, then dispatches and
    /// answers. On failure every publisher in the batch gets `503`.
    fn commit_batch(&mut self, jobs: Vec<Job>, force_durable: bool, sweep: bool) -> Result<(), redb::Error> {
        let mut replies: Vec<Reply> = Vec::new();
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        let mut committed: Vec<Arc<Event>> = Vec::new();
        let mut head = self.shared.head.load(Ordering::Acquire);
        let mut oldest = self.shared.oldest.load(Ordering::Acquire);
        let mut bytes = self.shared.bytes.load(Ordering::Acquire);
        let mut count = self.shared.count.load(Ordering::Acquire);
        let mut durable = force_durable || self.config.fsync == FsyncPolicy::Always;
        let mut closing = false;
        let mut reserved = self.reserved;
        let mut audits = std::mem::take(&mut self.unwritten_audit);
        let mut rest = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job {
                Job::Audit(b, id, tenant) => audits.push((b, id, tenant)),
                other => rest.push(other),
            }
        }
        let jobs = rest;
        let (started, batch) = (Instant::now(), jobs.len() + audits.len());
        let result = (|| -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            {
                let mut events = txn.open_table(EVENTS)?;
                let mut ids = txn.open_table(IDS)?;
                let mut retained = txn.open_table(RETAINED)?;
                let mut meta = txn.open_table(META)?;
                let mut audit = txn.open_table(AUDIT)?;
                let mut audit_by_tenant = txn.open_table(AUDIT_BY_TENANT)?;
                let mut deny = txn.open_table(DENY)?;
                let mut tokens = txn.open_table(TOKENS)?;
                for (b, id, tenant) in &audits {
                    audit.insert(*id, b.as_slice())?;
                    if let Some(t) = tenant {
                        audit_by_tenant.insert((t.as_str(), *id), ())?;
                    }
                }
                for job in jobs {
                    match job {
                        Job::Append { drafts, now_ms, reply } => {
                            let mut seen = HashSet::new();
                            let mut dup = None;
                            for d in &drafts {
                                if let (Some(id), true) = (&d.id, d.unique_id) {
                                    let key = crate::history::scoped_id(d.audience.tenant.as_deref(), id);
                                    if !seen.insert(key.clone()) || ids.get(key.as_str())?.is_some() {
                                        dup = Some(id.clone());
                                        break;
                                    }
                                }
                            }
                            if let Some(id) = dup {
                                replies.push((reply, Err(HistoryError::DuplicateId(id))));
                                continue;
                            }
                            let mut out = Vec::with_capacity(drafts.len());
                            for d in drafts {
                                head += 1;
                                let event = Arc::new(d.into_event(head, now_ms));
                                let encoded = codec::encode_event(&event);
                                events.insert(head, encoded.as_slice())?;
                                count += 1;
                                bytes += encoded.len() as u64;
                                if !event.id.bytes().all(|b| b.is_ascii_digit()) {
                                    // A reused (Mercure) id keeps its earliest use: a
                                    // resume from it may repeat, never skip.
                                    let key = crate::history::scoped_id(event.audience.tenant.as_deref(), &event.id);
                                    if ids.get(key.as_str())?.is_none() {
                                        ids.insert(key.as_str(), head)?;
                                    }
                                }
                                if event.retain {
                                    let changes = self.slots.retain(&event);
                                    for key in &changes.removed {
                                        retained.remove(key.as_str())?;
                                    }
                                    for key in &changes.written {
                                        retained.insert(key.as_str(), encoded.as_slice())?;
                                    }
                                }
                                out.push(event);
                            }
                            committed.extend(out.iter().cloned());
                            replies.push((reply, Ok(out)));
                        }
                        // Taken out above, and written first.
                        Job::Audit(..) => {}
                        Job::Deny(b, ack) => {
                            let key = deny.last()?.map_or(1, |(k, _)| k.value() + 1);
                            deny.insert(key, b.as_slice())?;
                            acks.push(ack);
                        }
                        Job::TokenPut(h, b) => {
                            tokens.insert(h.as_slice(), b.as_slice())?;
                        }
                        Job::TokenDel(h) => {
                            tokens.remove(h.as_slice())?;
                        }
                        Job::Flush(ack) => acks.push(ack),
                        Job::Close(ack) => {
                            closing = true;
                            acks.push(ack);
                        }
                    }
                }
                // Retention, enforced in every commit so the file stays
                // bounded: redb reuses the pages these deletes free.
                let now_ms = crate::clock::now_ms();
                let age_cut = (self.config.max_age_ms > 0).then(|| now_ms.saturating_sub(self.config.max_age_ms));
                loop {
                    let over = count > self.config.max_events
                        || (self.config.max_bytes > 0 && bytes > self.config.max_bytes && count > 1);
                    let Some((k, v)) = events.first()? else { break };
                    let (seq, len) = (k.value(), v.value().len() as u64);
                    let decoded = codec::decode_event(v.value()).ok();
                    let too_old = match (age_cut, &decoded) {
                        (Some(cut), Some(e)) => e.published_at_ms < cut,
                        _ => false,
                    };
                    drop((k, v));
                    if !over && !too_old {
                        break;
                    }
                    events.remove(seq)?;
                    count = count.saturating_sub(1);
                    if let Some(e) = decoded {
                        // The id's earliest use is gone: resuming from it is a reset.
                        let key = crate::history::scoped_id(e.audience.tenant.as_deref(), &e.id);
                        let current = ids.get(key.as_str())?.map(|v| v.value());
                        if current == Some(seq) {
                            ids.remove(key.as_str())?;
                        }
                    }
                    bytes = bytes.saturating_sub(len);
                    oldest = seq + 1;
                }
                if oldest <= head && events.first()?.is_none() {
                    oldest = head + 1;
                }
                while audit.len()? > self.config.max_audit {
                    let Some((k, v)) = audit.pop_first()? else { break };
                    if let Ok(TenantOf { tenant: Some(t) }) = serde_json::from_slice(v.value()) {
                        audit_by_tenant.remove((t.as_str(), k.value()))?;
                    }
                }
                // Deny rules, tokens and retained slots whose time is over,
                // once a second.
                if sweep {
                    if let Some(cut) = age_cut {
                        for key in self.slots.expire(cut) {
                            retained.remove(key.as_str())?;
                        }
                    }
                    deny.retain(|_, v| {
                        serde_json::from_slice::<serde_json::Value>(v)
                            .ok()
                            .and_then(|r| r.get("expires_at_ms").and_then(serde_json::Value::as_u64))
                            .is_none_or(|exp| exp > now_ms)
                    })?;
                    tokens.retain(|_, v| {
                        serde_json::from_slice::<TokenRecord>(v).is_ok_and(|r| r.expires_at_ms > now_ms)
                    })?;
                }
                meta.insert("format", FORMAT)?;
                meta.insert("head", head)?;
                meta.insert("bytes", bytes)?;
                if closing {
                    reserved = head;
                    meta.insert("reserved", reserved)?;
                } else if self.config.fsync != FsyncPolicy::Always && head >= reserved {
                    // Reserve the next block durably before handing it out.
                    reserved = head + SEQ_RESERVATION;
                    meta.insert("reserved", reserved)?;
                    durable = true;
                }
            }
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            txn.commit()?;
            Ok(())
        })();
        // How long commits take and how much each carries: what bounds
        // publish throughput under `fsync = "always"` (one commit at a time).
        metrics::histogram!("herald_store_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("herald_store_commit_jobs").record(batch as f64);
        match result {
            Ok(()) => {
                self.reserved = reserved;
                if durable {
                    self.last_durable = Instant::now();
                    self.dirty = false;
                } else {
                    self.dirty = true;
                }
                self.shared.head.store(head, Ordering::Release);
                self.shared.oldest.store(oldest, Ordering::Release);
                self.shared.bytes.store(bytes, Ordering::Release);
                self.shared.count.store(count, Ordering::Release);
                self.shared
                    .audit_committed
                    .fetch_add(audits.len() as u64, Ordering::AcqRel);
                if !committed.is_empty() {
                    if let Some(sink) = self.shared.sink.get() {
                        sink(&committed);
                    }
                }
                for (reply, r) in replies {
                    let _ = reply.send(r);
                }
                for ack in acks {
                    let _ = ack.send(());
                }
                Ok(())
            }
            Err(e) => {
                for (reply, r) in replies {
                    let _ = reply.send(match r {
                        Err(dup) => Err(dup),
                        Ok(_) => Err(HistoryError::Unavailable(format!("store write failed: {e}"))),
                    });
                }
                // Kept for the next commit, within the log's own bound;
                // what falls past it is counted as done, so the count stays
                // aligned with the places the log handed out.
                let over = audits.len().saturating_sub(self.config.max_audit as usize);
                audits.drain(..over);
                self.shared.audit_committed.fetch_add(over as u64, Ordering::AcqRel);
                self.unwritten_audit = audits;
                Err(e)
            }
        }
    }
}
