//! The checkpoint policy of one process: a pure state machine, one [`ShardWal`] per shard file.
//!
//! Inputs are plain values: a commit seen by the WAL hook (`on_commit`: WAL frames after the
//! commit, now), the outcome of a checkpoint (`after_inline`, `after_drain`, `after_truncate`),
//! and the clock (`next_job`). Outputs say what to do: nothing, wake the background thread, or
//! checkpoint inline in the committing thread; and for the background thread which shard to
//! drain, truncate or close next, and when to look again. Nothing here touches SQLite, files or
//! threads; `runner` does, and the unit tests below drive this with made-up numbers.
//!
//! HOW A SHARD'S WAL CYCLES (frames are SQLite's `mxFrame`, what the WAL hook reports):
//!
//! ```text
//!  commit ... frames >= threshold/2 ──Wake──▶ background PASSIVE drains (backfilled ≈ frames)
//!     ▲                                            │
//!     │          a commit with frames >= threshold, frames - backfilled <= tail
//!     │                                            ▼
//!  writer's next transaction ◀── everything ── writer's hook runs a tiny PASSIVE ("tail")
//!  restarts the WAL (rewind)     backfilled
//! ```
//!
//! SQLite rewinds a WAL only when the writer's transaction *starts* with every frame already
//! copied into the database (`nBackfill == mxFrame`). A background checkpoint alone never gets
//! there under continuous writes (the writer appends while it copies), so the background copies
//! the bulk and the writer's hook finishes the last few frames itself, right after its commit,
//! while no other writer can append in between.
//!
//! Rules, in `on_commit` order:
//! 1. frames fell below the last value: the WAL was restarted (rewind, by us or anyone) — forget
//!    what was backfilled.
//! 2. frames >= `hard_cap` (the background is not keeping up): checkpoint inline, PASSIVE, as
//!    stock SQLite does (at most once per `threshold` new frames, so a reader that pins the WAL
//!    does not turn every commit into a futile checkpoint).
//! 3. frames >= `threshold`, a drain happened in this WAL generation and at most `tail` frames are
//!    left (more once the WAL is past `threshold`: `Config::tail_limit`), or in any case once it
//!    holds `force_tail` (1.2 × threshold) frames: tail checkpoint (again at most once per
//!    `threshold` frames if the following transaction could not rewind, e.g. because a reader
//!    holds an old snapshot). The forced tail bounds the WAL when the background lags (a writer
//!    faster than the copying): it may copy a few hundred frames, still less than stock's 1000.
//!    Where writers wait at the manager's gate before each write transaction (`gated`: shard
//!    connections), the small tail is a background job instead ([`Job::Tail`]): a FULL
//!    checkpoint, which holds the WAL's write lock while it copies the last frames and SQLite
//!    syncs the WAL and the database file, so no commit can slip in and the next transaction
//!    rewinds. A writer that arrives meanwhile waits at the gate (counted as writer time); one
//!    whose commits come less often than a tail lasts never waits. So the background tail is
//!    chosen only while the shard's mean gap between commits in this WAL generation is longer
//!    than the last tail took (`background_tail_pays`); otherwise (one file written fast, a slow
//!    disk) the writer would wait for nearly the whole tail plus the hand-over, and copies it
//!    itself. If the FULL checkpoint cannot take the write lock it copies what it can like a
//!    PASSIVE one and is retried; the forced tail stays in the writer.
//! 4. frames >= `drain_at` (half the threshold) and more than `drain_chunk` (a quarter) frames not
//!    yet copied, or frames >= `threshold` and more than `tail` not copied: ask the background for
//!    a drain. Starting early lets the drains catch up with the writer by the time the WAL reaches
//!    `threshold`, so it rewinds at about the size where stock SQLite's does.
//! 5. first commit after the WAL was truncated: wake the background so it schedules the idle
//!    TRUNCATE `idle_ms` later.
//!
//! The background takes, in order: drains (largest backlog first), idle truncates (no commit for
//! `idle_ms`), closes of its own connection (unused for `close_after_ms`). A checkpoint that met
//! SQLITE_BUSY, or a drain that made no progress (a reader pins the WAL), is retried after a
//! back-off doubling from `retry_ms` (a busy drain: from `busy_drain_retry_ms`, as it only met
//! another checkpointer) up to `max_retry_ms`. When a drain finds frames it cannot
//! copy because of a reader and the WAL holds at least `pin_warn_frames`, it returns a warning
//! (at most one per `warn_every_ms` per shard).
//!
//! Not supported here: the age of the oldest read transaction (SQLite does not expose it), and
//! back-pressure on writers while a reader pins the WAL.

/// Who checkpoints shard WALs (process-wide, `shardvt_checkpoint_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// This policy: background drains, tail checkpoints, idle truncates, inline at saturation.
    Managed,
    /// SQLite's own auto-checkpoint: the committing connection checkpoints (PASSIVE) after every
    /// commit that leaves `threshold` or more frames in the WAL.
    Stock,
    /// Nobody in this process checkpoints (an external tool such as Litestream does).
    External,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "managed" => Some(Mode::Managed),
            "stock" => Some(Mode::Stock),
            "external" => Some(Mode::External),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Managed => "managed",
            Mode::Stock => "stock",
            Mode::External => "external",
        }
    }
}

/// Tunables (frames are WAL frames, one page each; times in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub threshold: u32,
    pub drain_at: u32,
    pub drain_chunk: u32,
    pub hard_cap: u32,
    pub tail: u32,
    /// From this many frames on the writer copies whatever is left, however large: the WAL
    /// rewinds by then even when the background lags (bounds the WAL at ~1.2x stock's).
    pub force_tail: u32,
    pub idle_ms: u64,
    pub close_after_ms: u64,
    pub retry_ms: u64,
    pub busy_drain_retry_ms: u64,
    pub max_retry_ms: u64,
    pub pin_warn_frames: u32,
    pub warn_every_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config::with_threshold(1000)
    }
}

impl Config {
    /// The largest tail the writer copies inline at `frames` frames: `tail`, growing by half of
    /// the excess over `threshold`. When the disk is slow and the writer fast, each drain ends
    /// with more than `tail` new frames; the growing limit still ends the cycle soon after the
    /// threshold (the writer then copies part of what stock SQLite would copy in full).
    pub fn tail_limit(&self, frames: u32) -> u32 {
        self.tail.saturating_add(frames.saturating_sub(self.threshold) / 2)
    }

    /// Defaults scaled from a threshold (SQLite's stock autocheckpoint is 1000 frames).
    pub fn with_threshold(threshold: u32) -> Config {
        let threshold = threshold.max(8);
        Config {
            threshold,
            drain_at: threshold / 2,
            drain_chunk: threshold / 4,
            hard_cap: threshold.saturating_mul(8),
            tail: (threshold / 8).max(1),
            force_tail: threshold.saturating_add(threshold / 5),
            idle_ms: 150,
            close_after_ms: 2000,
            retry_ms: 20,
            busy_drain_retry_ms: 2,
            max_retry_ms: 500,
            pin_warn_frames: threshold.saturating_mul(4),
            warn_every_ms: 10_000,
        }
    }
}

/// What one checkpoint call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran: `log` frames in the WAL, `ckpt` of them copied into the database.
    Done { log: u32, ckpt: u32 },
    /// SQLITE_BUSY: another checkpointer, a writer (TRUNCATE) or a reader (TRUNCATE) was in the way.
    Busy,
    /// Any other error (the file was removed, I/O error): try again later.
    Failed,
}

/// What the committing thread should do after its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    Nothing,
    Wake,
    /// Finish the drain: a tiny PASSIVE checkpoint on the writer's connection.
    Tail,
    /// The background cannot keep up: stock inline PASSIVE checkpoint.
    Saturated,
}

/// Background work for one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Drain,
    /// Copy the last frames with the WAL's write lock held (a FULL checkpoint, writers of this
    /// process waiting at the gate): the writer's next transaction then rewinds the WAL.
    Tail,
    Truncate,
    Close,
}

/// Counters reported by `shardvt_wal_stats()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub commits: u64,
    pub background: u64,
    pub tail: u64,
    pub inline: u64,
    pub truncate: u64,
    pub rewinds: u64,
    pub busy_retries: u64,
    pub pin_warnings: u64,
    /// Time the committing threads spent in tail and inline checkpoints, and waiting at the gate
    /// of a background tail or truncate (µs): the writer's cost.
    pub writer_ckpt_us: u64,
    /// Tails the background ran (also counted in `tail`), and writer waits at the gate.
    pub background_tail: u64,
    pub gate_waits: u64,
    pub writer_ckpt_max_us: u64,
    /// Wall-clock time (unix ms) of the last checkpoint that ran, any kind.
    pub last_checkpoint_unix_ms: Option<u64>,
    /// Commits the writer was slowed down after (back-pressure), and the total delay (ms).
    pub throttled: u64,
    pub throttled_ms: u64,
}

/// The policy's view of one shard's WAL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardWal {
    /// WAL frames after the last commit seen.
    pub frames: u32,
    /// Frames known to be copied into the database in this WAL generation.
    pub backfilled: u32,
    /// Frames a checkpoint could not copy because a reader still uses them (last checkpoint).
    pub pinned: u32,
    pub last_commit_ms: Option<u64>,
    /// A commit happened since the last successful TRUNCATE.
    pub dirty: bool,
    /// The hook asked for a drain that has not run yet.
    pub queued: bool,
    /// No background job before this time (back-off after BUSY / no progress).
    pub retry_at_ms: u64,
    pub backoff_ms: u64,
    /// `frames` when the last tail (inline or background) / saturation checkpoint ran in this
    /// WAL generation.
    pub tail_at: Option<u32>,
    /// Writers of this file in this process wait at the manager's gate before each write
    /// transaction (shard connections do; a host database put under the manager does not), so
    /// the background may hold the WAL's write lock: the small tail is then copied by the
    /// background ([`Job::Tail`]) instead of by the writer.
    pub gated: bool,
    /// A background tail is wanted (set by `on_commit`, cleared when one ran).
    pub tail_wanted: bool,
    /// When this WAL generation began (its first commit) and commits since: the shard's mean
    /// gap between commits.
    pub cycle_start_ms: Option<u64>,
    pub cycle_commits: u32,
    /// How long the last tail took (µs; the background's FULL under the gate, or the writer's
    /// inline tail): what a writer arriving during a background tail would wait. 0: unknown.
    pub last_tail_us: u64,
    pub saturated_at: Option<u32>,
    /// The background thread holds a connection to this shard, last used at `used_ms`.
    pub has_conn: bool,
    pub used_ms: u64,
    pub warned_ms: Option<u64>,
    /// Since when checkpoints have made no progress because a reader holds frames (None: not
    /// pinned). `now - pinned_since_ms` is a lower bound on the age of the oldest read
    /// transaction that pins the WAL.
    pub pinned_since_ms: Option<u64>,
    /// The mode of the last commit (a commit in another mode may have left the shard dirty
    /// without the background knowing).
    pub last_mode: Option<Mode>,
    /// After the inline checkpoint `on_commit` asked for, wake the background (it has not
    /// been told about this dirty shard): read and cleared by `take_wake`.
    pub wake_after_inline: bool,
    pub counters: Counters,
}

impl ShardWal {
    pub fn backlog(&self) -> u32 {
        self.frames.saturating_sub(self.backfilled)
    }

    /// A commit left `frames` frames in the WAL (the WAL hook's argument).
    pub fn on_commit(&mut self, cfg: &Config, mode: Mode, frames: u32, now_ms: u64) -> HookAction {
        self.counters.commits += 1;
        if frames < self.frames || self.cycle_start_ms.is_none() {
            self.cycle_start_ms = Some(now_ms);
            self.cycle_commits = 0;
        }
        self.cycle_commits = self.cycle_commits.saturating_add(1);
        if frames < self.frames {
            self.counters.rewinds += 1;
            self.backfilled = 0;
            self.pinned = 0;
            self.pinned_since_ms = None;
            self.tail_at = None;
            self.tail_wanted = false;
            self.saturated_at = None;
        }
        // the background only knows of a dirty shard that a managed commit woke it for
        let was_clean = !self.dirty || self.last_mode != Some(Mode::Managed);
        self.last_mode = Some(mode);
        self.frames = frames;
        self.last_commit_ms = Some(now_ms);
        self.dirty = true;
        match mode {
            Mode::Managed => {}
            Mode::Stock if frames >= cfg.threshold => return HookAction::Saturated,
            Mode::Stock | Mode::External => return HookAction::Nothing,
        }
        let once_per_threshold = |at: Option<u32>| match at {
            Some(f) => frames >= f.saturating_add(cfg.threshold),
            None => true,
        };
        if frames >= cfg.hard_cap && once_per_threshold(self.saturated_at) {
            self.wake_after_inline = was_clean;
            return HookAction::Saturated;
        }
        let small_tail = frames >= cfg.threshold && self.backfilled > 0 && self.backlog() <= cfg.tail_limit(frames);
        let forced = frames >= cfg.threshold && frames >= cfg.force_tail;
        if (small_tail || forced) && once_per_threshold(self.tail_at) {
            if self.gated && !forced && self.background_tail_pays(now_ms) {
                // the background copies the tail while holding the write lock (`Job::Tail`)
                let first = !self.tail_wanted;
                self.tail_wanted = true;
                return if first || was_clean { HookAction::Wake } else { HookAction::Nothing };
            }
            self.wake_after_inline = was_clean;
            return HookAction::Tail;
        }
        // (a forced tail that could not rewind the WAL, e.g. a reader holds old frames, leaves
        // the rest to the background drains again)
        if !small_tail
            && !self.queued
            && ((frames >= cfg.threshold && self.backlog() > cfg.tail)
                || (frames >= cfg.drain_at && self.backlog() > cfg.drain_chunk))
        {
            self.queued = true;
            return HookAction::Wake;
        }
        if was_clean {
            HookAction::Wake
        } else {
            HookAction::Nothing
        }
    }

    /// Whether a background tail is worth it here: the writer's commits on this file are on
    /// average further apart than the last tail took (or that is not known yet), so the writer
    /// will mostly not be waiting at the gate while it runs. Otherwise (one file written fast, or
    /// a slow disk whose syncs make the tail long) the writer would wait for about the whole tail
    /// anyway, plus the hand-over: it copies the tail itself, as on an ungated file.
    pub fn background_tail_pays(&self, now_ms: u64) -> bool {
        if self.last_tail_us == 0 {
            return true;
        }
        let Some(start) = self.cycle_start_ms else { return true };
        let gap_us = now_ms.saturating_sub(start).saturating_mul(1000) / u64::from(self.cycle_commits.max(1));
        self.last_tail_us < gap_us
    }

    /// Whether the background must be woken after the inline checkpoint `on_commit` chose
    /// (the shard became dirty without the background being told: its first commit, or the
    /// first one after commits in another mode); clears the flag.
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake_after_inline)
    }

    /// The inline checkpoint chosen by `on_commit` (`Tail` or `Saturated`) returned `outcome`.
    pub fn after_inline(&mut self, action: HookAction, outcome: Outcome, rewinds_before: u64, took_us: u64, unix_ms: u64) {
        self.counters.writer_ckpt_us += took_us;
        self.counters.writer_ckpt_max_us = self.counters.writer_ckpt_max_us.max(took_us);
        match outcome {
            Outcome::Done { log, ckpt } => {
                self.note_copied(log, ckpt, rewinds_before, unix_ms);
                match action {
                    HookAction::Saturated => {
                        self.counters.inline += 1;
                        self.saturated_at = Some(self.frames);
                    }
                    _ => {
                        self.counters.tail += 1;
                        self.tail_at = Some(self.frames);
                        self.last_tail_us = took_us.max(1);
                    }
                }
            }
            // The background is checkpointing right now: it will report, the next commit retries.
            Outcome::Busy => self.counters.busy_retries += 1,
            Outcome::Failed => {}
        }
    }

    /// Records what a checkpoint copied. `rewinds_before` is `counters.rewinds` when it started:
    /// if the WAL restarted meanwhile, its numbers describe the previous generation and are
    /// dropped (they would make a fresh WAL look backfilled).
    fn note_copied(&mut self, log: u32, ckpt: u32, rewinds_before: u64, unix_ms: u64) {
        self.counters.last_checkpoint_unix_ms = Some(unix_ms);
        if self.counters.rewinds == rewinds_before {
            self.backfilled = ckpt;
            self.pinned = log.saturating_sub(ckpt);
            if self.pinned == 0 {
                self.pinned_since_ms = None;
            }
        }
    }

    /// Back-pressure (off unless `limit_frames > 0`): after a commit that left the WAL at or
    /// above the limit, the writer waits `delay_ms` before its next statement, so a WAL that
    /// cannot be checkpointed (a reader pins it, or the disk cannot keep up) grows at most by
    /// one commit per `delay_ms`. Returns the delay to apply and counts it.
    pub fn backpressure(&mut self, limit_frames: u32, delay_ms: u64) -> Option<u64> {
        if limit_frames == 0 || delay_ms == 0 || self.frames < limit_frames || self.backlog() < limit_frames {
            return None;
        }
        self.counters.throttled += 1;
        self.counters.throttled_ms += delay_ms;
        Some(delay_ms)
    }

    /// Milliseconds since checkpoints of this WAL were first held back by a reader (0: not now).
    pub fn pinned_for_ms(&self, now_ms: u64) -> u64 {
        self.pinned_since_ms.map_or(0, |t| now_ms.saturating_sub(t))
    }

    fn back_off(&mut self, cfg: &Config, now_ms: u64) {
        self.back_off_from(cfg.retry_ms, cfg, now_ms)
    }

    fn back_off_from(&mut self, first_ms: u64, cfg: &Config, now_ms: u64) {
        self.backoff_ms = if self.backoff_ms == 0 { first_ms } else { (self.backoff_ms * 2).min(cfg.max_retry_ms) };
        self.retry_at_ms = now_ms + self.backoff_ms;
    }

    fn clear_back_off(&mut self) {
        self.backoff_ms = 0;
        self.retry_at_ms = 0;
    }

    /// A background PASSIVE drain returned. Returns a warning to log when a reader pins a large
    /// WAL (issue 5 item 2).
    pub fn after_drain(
        &mut self,
        cfg: &Config,
        outcome: Outcome,
        rewinds_before: u64,
        now_ms: u64,
        unix_ms: u64,
    ) -> Option<String> {
        self.used_ms = now_ms;
        match outcome {
            Outcome::Done { log, ckpt } => {
                let before = self.backfilled;
                self.counters.background += 1;
                self.note_copied(log, ckpt, rewinds_before, unix_ms);
                if ckpt < log && ckpt <= before {
                    // No progress: a reader holds the rest. Look again later, not in a loop.
                    self.pinned_since_ms.get_or_insert(now_ms);
                    self.back_off(cfg, now_ms);
                    let warn_due = match self.warned_ms {
                        Some(t) => now_ms >= t + cfg.warn_every_ms,
                        None => true,
                    };
                    if log >= cfg.pin_warn_frames && warn_due {
                        self.warned_ms = Some(now_ms);
                        self.counters.pin_warnings += 1;
                        return Some(format!(
                            "{log} frames in the WAL, {} cannot be checkpointed until a reader ends its read transaction",
                            log - ckpt
                        ));
                    }
                } else {
                    self.queued = false;
                    self.clear_back_off();
                }
            }
            // Busy: another checkpointer (the writer's tail, another process)
            o => self.retry_soon(cfg, o, now_ms),
        }
        None
    }

    /// A background checkpoint met SQLITE_BUSY (look again after a brief back-off) or failed
    /// (after the normal one).
    fn retry_soon(&mut self, cfg: &Config, outcome: Outcome, now_ms: u64) {
        match outcome {
            Outcome::Busy => {
                self.counters.busy_retries += 1;
                self.back_off_from(cfg.busy_drain_retry_ms, cfg, now_ms);
            }
            Outcome::Failed => self.back_off(cfg, now_ms),
            Outcome::Done { .. } => {}
        }
    }

    /// A background tail ([`Job::Tail`]) returned. (Writers that waited for it at the gate
    /// report that through [`Self::note_gate_wait`].)
    /// `gated_us`: how long it held the gate.
    pub fn after_tail(&mut self, cfg: &Config, outcome: Outcome, rewinds_before: u64, gated_us: u64, now_ms: u64, unix_ms: u64) {
        self.used_ms = now_ms;
        match outcome {
            Outcome::Done { log, ckpt } => {
                self.last_tail_us = gated_us.max(1);
                self.counters.tail += 1;
                self.counters.background_tail += 1;
                self.note_copied(log, ckpt, rewinds_before, unix_ms);
                self.tail_at = Some(self.frames);
                self.tail_wanted = false;
                self.queued = false;
                self.clear_back_off();
            }
            // Busy: FULL became PASSIVE (a writer held the lock) and could not reach the end, or
            // a reader holds frames: look again soon; the forced tail bounds the WAL anyway
            o => self.retry_soon(cfg, o, now_ms),
        }
    }

    /// Writers of this process waited `us` at the gate of a background tail or truncate.
    pub fn note_gate_wait(&mut self, us: u64) {
        self.counters.gate_waits += 1;
        self.counters.writer_ckpt_us += us;
        self.counters.writer_ckpt_max_us = self.counters.writer_ckpt_max_us.max(us);
    }

    /// A background TRUNCATE returned; `commits_before` is `counters.commits` when it started
    /// (a commit during the checkpoint means the WAL is not empty any more).
    pub fn after_truncate(&mut self, cfg: &Config, outcome: Outcome, commits_before: u64, now_ms: u64, unix_ms: u64) {
        self.used_ms = now_ms;
        match outcome {
            Outcome::Done { log, ckpt } => {
                self.counters.truncate += 1;
                self.counters.last_checkpoint_unix_ms = Some(unix_ms);
                self.clear_back_off();
                self.tail_wanted = false;
                if self.counters.commits == commits_before {
                    self.frames = 0;
                    self.backfilled = 0;
                    self.pinned = 0;
                    self.pinned_since_ms = None;
                    self.tail_at = None;
                    self.tail_wanted = false;
                    self.saturated_at = None;
                    self.dirty = false;
                    self.queued = false;
                } else {
                    self.backfilled = ckpt;
                    self.pinned = log.saturating_sub(ckpt);
                }
            }
            Outcome::Busy => {
                self.counters.busy_retries += 1;
                self.back_off(cfg, now_ms);
            }
            Outcome::Failed => self.back_off(cfg, now_ms),
        }
    }

    /// The background thread opened (or reused) its connection to this shard.
    pub fn note_conn(&mut self, now_ms: u64) {
        self.has_conn = true;
        self.used_ms = now_ms;
    }

    /// The background thread closed its connection to this shard.
    pub fn after_close(&mut self) {
        self.has_conn = false;
    }

    fn wants_close(&self, cfg: &Config, now_ms: u64) -> (Option<Job>, Option<u64>) {
        if !self.has_conn {
            return (None, None);
        }
        let at = self.used_ms.saturating_add(cfg.close_after_ms);
        if at <= now_ms {
            (Some(Job::Close), None)
        } else {
            (None, Some(at))
        }
    }

    /// The work this shard wants now, or the time it will want some (ms), or neither.
    fn wants(&self, cfg: &Config, now_ms: u64) -> (Option<Job>, Option<u64>) {
        let ready = self.retry_at_ms <= now_ms;
        // a shard idle long enough for its TRUNCATE gets that instead (it copies the tail too)
        let idle = self.dirty && self.last_commit_ms.unwrap_or(0).saturating_add(cfg.idle_ms) <= now_ms;
        if self.tail_wanted && !idle {
            if ready {
                return (Some(Job::Tail), None);
            }
            return (None, Some(self.retry_at_ms));
        }
        if self.queued {
            if ready {
                return (Some(Job::Drain), None);
            }
            return (None, Some(self.retry_at_ms));
        }
        if self.dirty {
            let at = self.last_commit_ms.unwrap_or(0).saturating_add(cfg.idle_ms).max(self.retry_at_ms);
            if at <= now_ms {
                return (Some(Job::Truncate), None);
            }
            return (None, Some(at));
        }
        self.wants_close(cfg, now_ms)
    }
}

/// The next job over all shards: drains first, largest backlog first; then truncates (longest
/// idle first), then closes. Also returns the earliest time a shard will want work, so the
/// background thread knows how long it may sleep. Outside `Managed` mode only closes are done.
pub fn next_job(cfg: &Config, mode: Mode, shards: &[ShardWal], now_ms: u64) -> (Option<(usize, Job)>, Option<u64>) {
    let mut best: Option<(usize, Job)> = None;
    let mut wake: Option<u64> = None;
    let rank = |s: &ShardWal, j: Job| -> (u8, u64) {
        match j {
            Job::Tail => (4, s.backlog() as u64),
            Job::Drain => (3, s.backlog() as u64),
            Job::Truncate => (2, u64::MAX - s.last_commit_ms.unwrap_or(0)),
            Job::Close => (1, 0),
        }
    };
    for (i, s) in shards.iter().enumerate() {
        let (job, at) = if mode == Mode::Managed { s.wants(cfg, now_ms) } else { s.wants_close(cfg, now_ms) };
        if let Some(at) = at {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        if let Some(j) = job {
            let better = match best {
                None => true,
                Some((b, bj)) => rank(s, j) > rank(&shards[b], bj),
            };
            if better {
                best = Some((i, j));
            }
        }
    }
    (best, wake)
}

/// After a background drain (PASSIVE checkpoint) that copied the WAL up to frame `copied_to`
/// (nBackfill; `before` was nBackfill before it), with the WAL ending at frame `end` right
/// after it: whether the checkpoint thread must now fsync the database file itself.
///
/// SQLite syncs the database file only in a checkpoint that reaches the WAL's end. Without this,
/// every page the drains copied would be written back by the next checkpoint that does: the
/// writer's tail. `unsynced` remembers pages copied by earlier drains but not yet synced. The
/// sync is done once per WAL cycle, by the first drain that finds the WAL at 3/4 of `threshold`
/// or more (the last drains before the tail): each background fsync slows the writer's
/// concurrent commits a little (measured as p99), so one per cycle, covering every drain of it.
pub fn sync_after_drain(cfg: &Config, unsynced: &mut bool, before: Option<u32>, copied_to: u32, end: Option<u32>) -> bool {
    let Some(end) = end else { return false };
    if copied_to >= end {
        *unsynced = false; // reached the end: SQLite synced the file itself
        return false;
    }
    if copied_to > 0 && before != Some(copied_to) {
        *unsynced = true;
    }
    if *unsynced && end >= cfg.threshold / 4 * 3 {
        *unsynced = false;
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::with_threshold(1000)
    }

    /// `cfg()` without the forced tail, to test the drain rules on WALs past 1.2 × threshold.
    fn cfg_no_force() -> Config {
        Config { force_tail: u32::MAX, ..cfg() }
    }

    fn commits(s: &mut ShardWal, c: &Config, frames: impl IntoIterator<Item = u32>, now: u64) -> Vec<HookAction> {
        frames.into_iter().map(|f| s.on_commit(c, Mode::Managed, f, now)).collect()
    }

    #[test]
    fn stale_drain_result_does_not_mark_a_fresh_wal_backfilled() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 1200, 0);
        let rewinds = s.counters.rewinds;
        // while the drain ran, the tail finished and the next transaction restarted the WAL
        s.on_commit(&c, Mode::Managed, 4, 1);
        s.after_drain(&c, Outcome::Done { log: 1200, ckpt: 1200 }, rewinds, 2, 0);
        assert_eq!((s.backfilled, s.counters.background), (0, 1));
        for f in (8..1100).step_by(4) {
            assert_ne!(s.on_commit(&c, Mode::Managed, f, 3), HookAction::Tail, "frames {f}");
        }
    }

    #[test]
    fn stock_and_external_modes() {
        let c = cfg();
        let mut s = ShardWal::default();
        assert_eq!(s.on_commit(&c, Mode::External, 5, 0), HookAction::Nothing);
        assert_eq!(s.on_commit(&c, Mode::External, 50_000, 0), HookAction::Nothing);
        assert_eq!(next_job(&c, Mode::External, &[s], 10_000), (None, None));
        let mut t = ShardWal::default();
        assert_eq!(t.on_commit(&c, Mode::Stock, 999, 0), HookAction::Nothing);
        // stock checkpoints at every commit past the threshold, as sqlite3WalDefaultHook does
        assert_eq!(t.on_commit(&c, Mode::Stock, 1002, 0), HookAction::Saturated);
        t.after_inline(HookAction::Saturated, Outcome::Done { log: 1002, ckpt: 0 }, 0, 0, 0);
        assert_eq!(t.on_commit(&c, Mode::Stock, 1005, 0), HookAction::Saturated);
        assert_eq!(Mode::parse(" Managed "), Some(Mode::Managed));
        assert_eq!(Mode::parse("litestream"), None);
        assert_eq!(Mode::External.name(), "external");
    }

    #[test]
    fn a_shard_dirty_from_another_mode_wakes_the_background_once_managed() {
        let c = cfg();
        let mut s = ShardWal::default();
        for f in [10, 5000, 9000] {
            assert_eq!(s.on_commit(&c, Mode::External, f, 0), HookAction::Nothing);
        }
        // back to managed past the hard cap: inline, and the background must be told (it was
        // never woken for this dirty shard, so no idle TRUNCATE would be scheduled)
        assert_eq!(s.on_commit(&c, Mode::Managed, 9001, 5), HookAction::Saturated);
        assert!(s.take_wake());
        s.after_inline(HookAction::Saturated, Outcome::Done { log: 9001, ckpt: 9001 }, 0, 0, 5);
        assert!(!s.take_wake());
        // later managed inline checkpoints do not wake it again
        assert_eq!(s.on_commit(&c, Mode::Managed, 10_002, 6), HookAction::Saturated);
        assert!(!s.take_wake());
        assert_eq!(next_job(&c, Mode::Managed, &[s], 6 + c.idle_ms), (Some((0, Job::Truncate)), None));
        // a managed shard that is already dirty and known: no wake
        let mut m = ShardWal::default();
        assert_eq!(m.on_commit(&c, Mode::Managed, 3, 0), HookAction::Wake);
        assert_eq!(m.on_commit(&c, Mode::Managed, 9000, 1), HookAction::Saturated);
        assert!(!m.take_wake());
    }

    #[test]
    fn defaults_follow_stock_threshold() {
        let c = cfg();
        assert_eq!((c.threshold, c.hard_cap, c.tail, c.idle_ms), (1000, 8000, 125, 150));
        assert_eq!(Config::with_threshold(0).threshold, 8);
    }

    #[test]
    fn first_commit_wakes_for_idle_truncate_then_quiet_until_half_threshold() {
        let c = cfg();
        let mut s = ShardWal::default();
        assert_eq!(s.on_commit(&c, Mode::Managed, 3, 0), HookAction::Wake);
        assert_eq!(commits(&mut s, &c, [6, 9, 499], 1), vec![HookAction::Nothing; 3]);
        assert_eq!(s.on_commit(&c, Mode::Managed, 502, 2), HookAction::Wake);
        assert!(s.queued);
        // already queued: no second wake
        assert_eq!(s.on_commit(&c, Mode::Managed, 1005, 3), HookAction::Nothing);
        // drained early: no tail before the WAL reaches the threshold, then one
        s.after_drain(&c, Outcome::Done { log: 1005, ckpt: 1005 }, 0, 4, 0);
        s.frames = 700;
        s.backfilled = 690;
        assert_eq!(s.on_commit(&c, Mode::Managed, 710, 5), HookAction::Nothing);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1000, 5), HookAction::Wake);
        s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 6, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1003, 7), HookAction::Tail);
    }

    #[test]
    fn drain_then_tail_then_rewind() {
        let c = cfg();
        let mut s = ShardWal::default();
        commits(&mut s, &c, [500, 1001], 0);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 1).0, Some((0, Job::Drain)));
        // the writer appended 40 frames while the drain copied the first 1001
        s.on_commit(&c, Mode::Managed, 1041, 2);
        assert_eq!(s.after_drain(&c, Outcome::Done { log: 1001, ckpt: 1001 }, 0, 3, 99), None);
        assert!(!s.queued);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1044, 4), HookAction::Tail);
        s.after_inline(HookAction::Tail, Outcome::Done { log: 1044, ckpt: 1044 }, 0, 0, 100);
        assert_eq!(s.counters.tail, 1);
        assert_eq!(s.counters.last_checkpoint_unix_ms, Some(100));
        // the next transaction restarted the WAL
        assert_eq!(s.on_commit(&c, Mode::Managed, 3, 5), HookAction::Nothing);
        assert_eq!((s.counters.rewinds, s.backfilled, s.tail_at), (1, 0, None));
    }

    #[test]
    fn gated_shard_gets_its_tail_from_the_background() {
        let c = cfg();
        let mut s = ShardWal { gated: true, ..ShardWal::default() };
        commits(&mut s, &c, [500, 1001], 0);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 1).0, Some((0, Job::Drain)));
        s.on_commit(&c, Mode::Managed, 1041, 2);
        s.after_drain(&c, Outcome::Done { log: 1001, ckpt: 1001 }, 0, 3, 99);
        // small tail: not in the writer, a background job (woken once)
        assert_eq!(s.on_commit(&c, Mode::Managed, 1044, 4), HookAction::Wake);
        assert!(s.tail_wanted);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1047, 4), HookAction::Nothing);
        // the tail goes before any other shard's drain, however large its backlog
        let other = ShardWal { queued: true, frames: 5000, ..ShardWal::default() };
        assert_eq!(next_job(&c, Mode::Managed, &[other, s], 5).0, Some((1, Job::Tail)));
        s.after_tail(&c, Outcome::Done { log: 1047, ckpt: 1047 }, 0, 300, 6, 120);
        assert_eq!(s.last_tail_us, 300);
        assert_eq!((s.counters.tail, s.counters.background_tail, s.tail_wanted), (1, 1, false));
        assert_eq!((s.backfilled, s.tail_at, s.counters.writer_ckpt_us), (1047, Some(1047), 0));
        assert_eq!(next_job(&c, Mode::Managed, &[s], 7).0, None);
        // the writer's next transaction rewound the WAL
        assert_eq!(s.on_commit(&c, Mode::Managed, 3, 8), HookAction::Nothing);
        assert_eq!((s.counters.rewinds, s.backfilled, s.tail_at), (1, 0, None));
        // a writer that waited at the gate pays for it in writer time
        s.note_gate_wait(250);
        s.note_gate_wait(100);
        assert_eq!((s.counters.gate_waits, s.counters.writer_ckpt_us, s.counters.writer_ckpt_max_us), (2, 350, 250));
    }

    #[test]
    fn gated_tail_that_meets_a_writer_is_retried_and_the_forced_tail_stays_inline() {
        let c = cfg();
        let mut s = ShardWal { gated: true, ..ShardWal::default() };
        commits(&mut s, &c, [500, 1001], 0);
        s.after_drain(&c, Outcome::Done { log: 1001, ckpt: 1001 }, 0, 1, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1010, 2), HookAction::Wake);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 2).0, Some((0, Job::Tail)));
        // FULL could not take the write lock and stopped short: retried after a short back-off
        s.after_tail(&c, Outcome::Busy, 0, 0, 3, 0);
        assert!(s.tail_wanted);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 3), (None, Some(3 + c.busy_drain_retry_ms)));
        assert_eq!(next_job(&c, Mode::Managed, &[s], 3 + c.busy_drain_retry_ms).0, Some((0, Job::Tail)));
        // the background still lags at force_tail: the writer copies the rest itself
        assert_eq!(s.on_commit(&c, Mode::Managed, c.force_tail, 4), HookAction::Tail);
        // the writer stopped: once the shard is idle its TRUNCATE replaces the wanted tail
        let mut idle = s;
        idle.retry_at_ms = 0;
        assert_eq!(next_job(&c, Mode::Managed, &[idle], 4 + c.idle_ms).0, Some((0, Job::Truncate)));
        idle.after_truncate(&c, Outcome::Done { log: 1200, ckpt: 1200 }, idle.counters.commits, 5 + c.idle_ms, 0);
        assert!(!idle.tail_wanted && !idle.dirty);
        // an ungated file (a host database) keeps the small tail in the writer
        let mut h = ShardWal::default();
        commits(&mut h, &c, [500, 1001], 0);
        h.after_drain(&c, Outcome::Done { log: 1001, ckpt: 1001 }, 0, 1, 0);
        assert_eq!(h.on_commit(&c, Mode::Managed, 1010, 2), HookAction::Tail);
    }

    #[test]
    fn gated_shard_whose_writer_outpaces_the_tail_copies_it_inline() {
        let c = cfg();
        // a writer at about 10 commits per ms, with tails of 500 µs: it would wait at the gate
        // for most of every background tail, so it copies the tail itself
        let mut fast = ShardWal { gated: true, last_tail_us: 500, ..ShardWal::default() };
        for (i, f) in (1..=1000u32).enumerate() {
            fast.on_commit(&c, Mode::Managed, f, i as u64 / 10);
        }
        fast.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 100, 0);
        assert!(!fast.background_tail_pays(100));
        assert_eq!(fast.on_commit(&c, Mode::Managed, 1003, 100), HookAction::Tail);
        fast.after_inline(HookAction::Tail, Outcome::Done { log: 1003, ckpt: 1003 }, 0, 450, 0);
        assert_eq!(fast.last_tail_us, 450);
        // a writer at one commit per 2 ms on this shard: the background's tail is done long
        // before its next commit
        let mut slow = ShardWal { gated: true, last_tail_us: 500, ..ShardWal::default() };
        for (i, f) in (1..=1000u32).enumerate() {
            slow.on_commit(&c, Mode::Managed, f, 2 * i as u64);
        }
        slow.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 2000, 0);
        assert!(slow.background_tail_pays(2000));
        assert_eq!(slow.on_commit(&c, Mode::Managed, 1003, 2000), HookAction::Wake);
        assert!(slow.tail_wanted);
        // the rate is measured per WAL generation: after the rewind it starts over
        slow.on_commit(&c, Mode::Managed, 4, 2001);
        assert_eq!((slow.cycle_start_ms, slow.cycle_commits), (Some(2001), 1));
    }

    #[test]
    fn slow_drains_still_end_in_a_tail_soon_after_the_threshold() {
        let c = cfg();
        assert_eq!((c.tail_limit(900), c.tail_limit(1000), c.tail_limit(1400)), (125, 125, 325));
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 1000, 0);
        // every drain ends 300 frames behind the writer
        s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 1, 0);
        // 1300 frames, backlog 300 > tail_limit(1300) = 275, but past force_tail (1200): tail
        assert_eq!(s.on_commit(&c, Mode::Managed, 1300, 2), HookAction::Tail);
        // without the forced tail the growing limit alone also ends it soon
        let c = cfg_no_force();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 1000, 0);
        s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 1, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1300, 2), HookAction::Wake);
        s.after_drain(&c, Outcome::Done { log: 1300, ckpt: 1300 }, 0, 3, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1600, 4), HookAction::Tail);
    }

    #[test]
    fn writer_outpacing_the_drain_asks_for_another() {
        let c = cfg_no_force();
        let mut s = ShardWal::default();
        commits(&mut s, &c, [1000], 0);
        s.on_commit(&c, Mode::Managed, 1400, 1);
        s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 2, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1403, 3), HookAction::Wake);
        assert_eq!(s.backlog(), 403);
    }

    #[test]
    fn failed_rewind_does_not_tail_every_commit() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 1000, 0);
        s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 1000 }, 0, 1, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1003, 2), HookAction::Tail);
        s.after_inline(HookAction::Tail, Outcome::Done { log: 1003, ckpt: 1003 }, 0, 0, 0);
        // a reader held read-mark 1, so the WAL did not restart: appended instead
        assert_eq!(s.on_commit(&c, Mode::Managed, 1006, 3), HookAction::Nothing);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1009, 3), HookAction::Nothing);
        // once `threshold` more frames arrived (and were drained), the tail is tried again
        s.on_commit(&c, Mode::Managed, 2003, 4);
        s.after_drain(&c, Outcome::Done { log: 2003, ckpt: 2003 }, 0, 5, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 2006, 6), HookAction::Tail);
    }

    #[test]
    fn busy_inline_tail_is_retried_at_the_next_commit() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 1000, 0);
        s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 990 }, 0, 1, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1003, 2), HookAction::Tail);
        s.after_inline(HookAction::Tail, Outcome::Busy, 0, 0, 0);
        assert_eq!(s.counters.busy_retries, 1);
        assert_eq!(s.on_commit(&c, Mode::Managed, 1006, 3), HookAction::Tail);
    }

    #[test]
    fn saturation_falls_back_to_inline_once_per_threshold() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 7990, 0);
        assert_eq!(s.on_commit(&c, Mode::Managed, 8000, 1), HookAction::Saturated);
        // a reader pins: nothing copied
        s.after_inline(HookAction::Saturated, Outcome::Done { log: 8000, ckpt: 0 }, 0, 0, 7);
        assert_eq!((s.counters.inline, s.pinned), (1, 8000));
        assert_ne!(s.on_commit(&c, Mode::Managed, 8010, 2), HookAction::Saturated);
        assert_eq!(s.on_commit(&c, Mode::Managed, 9000, 3), HookAction::Saturated);
    }

    #[test]
    fn drains_largest_backlog_first_then_truncates_then_closes() {
        let c = cfg_no_force();
        let mut a = ShardWal::default();
        let mut b = ShardWal::default();
        let mut idle = ShardWal::default();
        let mut old = ShardWal { has_conn: true, used_ms: 0, ..Default::default() };
        a.on_commit(&c, Mode::Managed, 1200, 1000);
        b.on_commit(&c, Mode::Managed, 3000, 1000);
        idle.on_commit(&c, Mode::Managed, 10, 0);
        let shards = [a, b, idle, old];
        assert_eq!(next_job(&c, Mode::Managed, &shards, 1001).0, Some((1, Job::Drain)));
        let shards = [a, idle, old];
        assert_eq!(next_job(&c, Mode::Managed, &shards, 1001).0, Some((0, Job::Drain)));
        let shards = [idle, old];
        assert_eq!(next_job(&c, Mode::Managed, &shards, 1001), (Some((0, Job::Truncate)), Some(2000)));
        assert_eq!(next_job(&c, Mode::Managed, &[old], 2000).0, Some((0, Job::Close)));
        old.after_close();
        assert_eq!(next_job(&c, Mode::Managed, &[old], 5000), (None, None));
    }

    #[test]
    fn idle_truncate_waits_for_quiet_and_survives_racing_commits() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 5, 100);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 200), (None, Some(250)));
        assert_eq!(next_job(&c, Mode::Managed, &[s], 250).0, Some((0, Job::Truncate)));
        // a commit lands while the TRUNCATE runs: the WAL is not empty afterwards
        let seq = s.counters.commits;
        s.on_commit(&c, Mode::Managed, 2, 301);
        s.after_truncate(&c, Outcome::Done { log: 0, ckpt: 0 }, seq, 302, 0);
        assert!(s.dirty);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 302), (None, Some(451)));
        let seq = s.counters.commits;
        s.after_truncate(&c, Outcome::Done { log: 0, ckpt: 0 }, seq, 451, 0);
        assert!(!s.dirty && s.frames == 0);
        assert_eq!(s.counters.truncate, 2);
        // the racing commit (5 -> 2 frames) saw the restarted WAL; the next commit after a
        // completed truncate is not a rewind, and wakes the thread again
        assert_eq!(s.counters.rewinds, 1);
        assert_eq!(s.on_commit(&c, Mode::Managed, 2, 600), HookAction::Wake);
        assert_eq!(s.counters.rewinds, 1);
    }

    #[test]
    fn busy_backs_off_exponentially() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 5, 0);
        let seq = s.counters.commits;
        s.after_truncate(&c, Outcome::Busy, seq, 200, 0);
        assert_eq!(s.retry_at_ms, 220);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 210), (None, Some(220)));
        s.after_truncate(&c, Outcome::Busy, seq, 220, 0);
        assert_eq!(s.retry_at_ms, 260);
        for _ in 0..10 {
            s.after_truncate(&c, Outcome::Busy, seq, 1000, 0);
        }
        assert_eq!(s.retry_at_ms, 1000 + c.max_retry_ms);
        assert_eq!(s.counters.busy_retries, 12);
        s.after_truncate(&c, Outcome::Done { log: 5, ckpt: 5 }, seq, 2000, 0);
        assert_eq!((s.backoff_ms, s.dirty), (0, false));
    }

    #[test]
    fn pinned_wal_backs_off_and_warns_once_per_period() {
        let c = cfg_no_force();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 1000, 0);
        assert_eq!(s.after_drain(&c, Outcome::Done { log: 1000, ckpt: 200 }, 0, 1, 0), None);
        assert!(!s.queued);
        s.on_commit(&c, Mode::Managed, 4100, 2);
        assert!(s.queued);
        // reader still there: no progress, large WAL -> warning, retry later
        let w = s.after_drain(&c, Outcome::Done { log: 4100, ckpt: 200 }, 0, 3, 0);
        assert!(w.unwrap().contains("3900 cannot be checkpointed"));
        assert!(s.queued);
        assert_eq!(s.pinned, 3900);
        assert_eq!(s.pinned_since_ms, Some(3), "first drain without progress");
        assert_eq!(s.pinned_for_ms(503), 500);
        assert_eq!(next_job(&c, Mode::Managed, &[s], 4), (None, Some(23)));
        assert_eq!(s.after_drain(&c, Outcome::Done { log: 4100, ckpt: 200 }, 0, 23, 0), None);
        assert_eq!(s.counters.pin_warnings, 1);
        let w = s.after_drain(&c, Outcome::Done { log: 4100, ckpt: 200 }, 0, 3 + c.warn_every_ms, 0);
        assert!(w.is_some());
        // the reader left: progress clears the back-off
        s.after_drain(&c, Outcome::Done { log: 4100, ckpt: 4100 }, 0, 20_000, 0);
        assert_eq!((s.queued, s.backoff_ms, s.pinned), (false, 0, 0));
        assert_eq!((s.pinned_since_ms, s.pinned_for_ms(30_000)), (None, 0));
    }

    #[test]
    fn backpressure_only_over_the_limit_with_a_backlog() {
        let c = cfg();
        let mut s = ShardWal::default();
        s.on_commit(&c, Mode::Managed, 5000, 0);
        assert_eq!(s.backpressure(0, 5), None, "off by default");
        assert_eq!(s.backpressure(6000, 5), None, "under the limit");
        assert_eq!(s.backpressure(4000, 5), Some(5));
        assert_eq!(s.backpressure(4000, 5), Some(5));
        assert_eq!((s.counters.throttled, s.counters.throttled_ms), (2, 10));
        // the background copied almost everything: the WAL is about to rewind, no delay
        s.after_drain(&c, Outcome::Done { log: 5000, ckpt: 4990 }, 0, 1, 0);
        assert_eq!(s.backpressure(4000, 5), None);
    }

    #[test]
    fn drains_that_stop_short_get_one_database_sync_per_cycle() {
        let cfg = Config::default(); // threshold 1000: syncs from 750 frames on
        let mut u = false;
        // an early drain copies 0..500 of 600: no sync yet, but remembered
        assert!(!sync_after_drain(&cfg, &mut u, Some(0), 500, Some(600)));
        assert!(u);
        // a late drain that copied nothing new still syncs what the early one copied
        assert!(sync_after_drain(&cfg, &mut u, Some(500), 500, Some(800)));
        assert!(!u);
        // nothing copied since the sync: no second one in the cycle
        assert!(!sync_after_drain(&cfg, &mut u, Some(500), 500, Some(900)));
        // copied again, late: sync
        assert!(sync_after_drain(&cfg, &mut u, Some(500), 850, Some(950)));
        // a drain that reached the end was synced by SQLite: forget the early pages
        assert!(!sync_after_drain(&cfg, &mut u, Some(0), 300, Some(400)));
        assert!(u);
        assert!(!sync_after_drain(&cfg, &mut u, Some(300), 900, Some(900)));
        assert!(!u);
        // no WAL index to read: never sync
        assert!(!sync_after_drain(&cfg, &mut u, None, 900, None));
    }

    #[test]
    fn a_lagging_background_still_gets_the_wal_rewound_at_force_tail() {
        let cfg = Config::default(); // threshold 1000, tail 125, force_tail 1200
        assert_eq!(cfg.force_tail, 1200);
        let mut s = ShardWal::default();
        assert_eq!(s.on_commit(&cfg, Mode::Managed, 600, 0), HookAction::Wake);
        s.after_drain(&cfg, Outcome::Done { log: 600, ckpt: 300 }, 0, 1, 1);
        // backlog 800 at 1100 frames: more than tail_limit(1100) = 175, the background goes on
        assert_ne!(s.on_commit(&cfg, Mode::Managed, 1100, 2), HookAction::Tail);
        // at 1200 frames the writer copies the rest itself, however much it is
        assert_eq!(s.on_commit(&cfg, Mode::Managed, 1200, 3), HookAction::Tail);
        // and without any drain in this generation too (the background could not run at all)
        let mut t = ShardWal::default();
        assert_ne!(t.on_commit(&cfg, Mode::Managed, 1100, 0), HookAction::Tail);
        assert_eq!(t.on_commit(&cfg, Mode::Managed, 1250, 1), HookAction::Tail);
    }

    #[test]
    fn after_a_forced_tail_that_could_not_rewind_the_background_drains_again() {
        let cfg = Config::default();
        let mut s = ShardWal::default();
        assert_eq!(s.on_commit(&cfg, Mode::Managed, 1200, 0), HookAction::Tail);
        // a reader holds frame 2: the tail copied nothing, the WAL did not rewind
        s.after_inline(HookAction::Tail, Outcome::Done { log: 1200, ckpt: 2 }, 0, 0, 0);
        assert_eq!(s.on_commit(&cfg, Mode::Managed, 1210, 1), HookAction::Wake);
        assert!(s.queued);
        // the next forced tail comes a threshold later
        assert_eq!(s.on_commit(&cfg, Mode::Managed, 2200, 2), HookAction::Tail);
    }
}
