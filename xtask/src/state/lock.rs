//! The environment lock: one run at a time may change an environment.
//!
//! A lock is a lease. [`Lock::acquire`] creates the lock object only if none exists
//! (`If-None-Match: *`), naming who holds it (user, host, pid, operation, times). While the
//! [`Lock`] lives, a background task renews the lease every third of its length with
//! `If-Match` on the last ETag; if a renewal finds the lock gone or someone else's, the lock
//! is marked lost ([`Lock::is_lost`], [`Lock::lost`]) so the holder can stop scheduling work.
//! [`Lock::release`] deletes the lock with `If-Match`, so nobody deletes a lock that is not
//! theirs.
//!
//! A lock whose lease has expired (its holder crashed, or was killed with `kill -9`) is
//! broken by the next [`Lock::acquire`], with a warning naming the old holder. A stuck lock
//! whose lease has not expired is removed with [`force_unlock`] (`cargo xtask unlock --force
//! <lock-id>`).
//!
//! Times are RFC 3339 in UTC, formatted and parsed with the `time` crate. Expiry is judged
//! by the local clock against the holder's `expires_at`, so clocks more than a lease apart
//! could break a live lock; the default lease of 60 s renewed every 20 s leaves 40 s of skew.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::store::{LockInfo, StateStore, StoreError, Versioned};

/// How long a lease lasts unless renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// How often a waiting [`Lock::acquire`] tries again.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// An RFC 3339 UTC timestamp with whole seconds, e.g. `2025-01-31T12:00:00Z`.
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).expect("0 ns is a valid nanosecond");
    at.format(&Rfc3339).expect("a UTC time with a four-digit year formats as RFC 3339")
}

/// Now, as [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// When a lease taken at `now` ends, rounded up to the whole second, so that the recorded
/// lease is never shorter than the real one.
fn lease_end(now: OffsetDateTime, lease: Duration) -> String {
    rfc3339(now + lease + Duration::from_nanos(999_999_999))
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The user running this process: `$USER`, `$USERNAME` or `$LOGNAME`, else the name of its
/// user id.
pub fn current_user() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .unwrap_or_else(user_of_uid)
}

/// The name `/etc/passwd` gives this process's user id, else `uid <n>`.
fn user_of_uid() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.get(2).and_then(|field| field.parse::<u32>().ok()) == Some(uid))
        .and_then(|fields| fields.first().map(|name| (*name).to_owned()))
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// This machine's host name: the kernel's, else `/etc/hostname`, else `$HOSTNAME`, else
/// `unknown`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether the lease of `lock` has run out at `now`. A lock whose `expires_at` cannot be
/// read never expires: only [`force_unlock`] removes it.
pub fn lease_expired(lock: &LockInfo, now: OffsetDateTime) -> bool {
    parse_rfc3339(&lock.expires_at).is_some_and(|expires_at| expires_at < now)
}

/// The identity of process `pid` as this machine sees it: the kernel's boot id, the pid
/// namespace, the pid and the process's start time. Two processes never share it, even when a
/// pid is reused; `None` where `/proc` does not tell.
pub fn process_identity(pid: u32) -> Option<String> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start_time = after_name.split_whitespace().nth(19)?;
    Some(format!("{}/{}/{pid}/{start_time}", boot_id.trim(), namespace.display()))
}

/// Whether `holder` is a process of this machine (same boot, same pid namespace) that no
/// longer runs: killed, or crashed, without releasing its lock.
pub fn holder_is_gone(holder: &LockInfo) -> bool {
    let Some(recorded) = holder.process.as_deref() else { return false };
    let Some(ours) = process_identity(std::process::id()) else { return false };
    let same_machine = |identity: &str| identity.splitn(3, '/').take(2).eq(ours.splitn(3, '/').take(2));
    same_machine(recorded) && process_identity(holder.pid).as_deref() != Some(recorded)
}

fn describe_holder(holder: &LockInfo) -> String {
    format!(
        "{} on {} (pid {}) for `{}` since {}, lease until {}, lock id {}",
        holder.who, holder.host, holder.pid, holder.operation, holder.started_at, holder.expires_at, holder.id
    )
}

/// How to acquire a lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// The command taking the lock, e.g. `deploy`; shown to whoever finds it held.
    pub operation: String,
    /// The lease; renewed every third of it while the lock is held.
    pub lease: Duration,
    /// How long to wait for a held lock (`--lock-timeout`); zero fails at once, naming the
    /// holder.
    pub timeout: Duration,
    /// How often to try again while waiting.
    pub poll_interval: Duration,
    /// Whether a lock whose lease has expired is broken (with a warning).
    pub break_expired: bool,
}

impl LockOptions {
    /// A 60 s lease, no waiting, expired leases broken.
    pub fn new(operation: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            lease: DEFAULT_LEASE,
            timeout: Duration::ZERO,
            poll_interval: DEFAULT_POLL_INTERVAL,
            break_expired: true,
        }
    }

    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    pub fn break_expired(mut self, break_expired: bool) -> Self {
        self.break_expired = break_expired;
        self
    }
}

/// The lock as last written by us.
#[derive(Debug)]
struct Held {
    info: LockInfo,
    etag: String,
}

#[derive(Debug)]
struct Shared {
    held: Mutex<Held>,
    /// Why the lock was lost, once it is.
    lost: watch::Sender<Option<String>>,
}

impl Shared {
    fn snapshot(&self) -> (LockInfo, String) {
        let held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        (held.info.clone(), held.etag.clone())
    }

    fn record(&self, info: LockInfo, etag: String) {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *held = Held { info, etag };
    }

    fn mark_lost(&self, why: String) {
        self.lost.send_replace(Some(why));
    }
}

/// A held environment lock. Release it with [`Lock::release`]; dropping it stops the
/// renewals, and the lock then expires after its lease.
#[derive(Debug)]
pub struct Lock<S: StateStore> {
    store: Arc<S>,
    shared: Arc<Shared>,
    lease: Duration,
    stop: Option<oneshot::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
}

impl<S: StateStore> Lock<S> {
    /// Takes the lock. When it is held by someone else: breaks it if its lease has expired
    /// (and `options.break_expired`), else waits up to `options.timeout`, trying again every
    /// `options.poll_interval`, and then fails with [`StoreError::Locked`] naming the holder.
    pub async fn acquire(store: Arc<S>, options: &LockOptions) -> Result<Self, StoreError> {
        use Breakable::{Expired, HolderGone};
        let id = uuid::Uuid::new_v4().to_string();
        let (who, host, pid) = (current_user(), hostname(), std::process::id());
        let started = Instant::now();
        let mut announced = false;
        loop {
            let now = OffsetDateTime::now_utc();
            let info = LockInfo {
                id: id.clone(),
                who: who.clone(),
                host: host.clone(),
                pid,
                operation: options.operation.clone(),
                started_at: rfc3339(now),
                expires_at: lease_end(now, options.lease),
                process: process_identity(pid),
            };
            let (location, holder) = match store.acquire_lock(&info).await {
                Ok(etag) => return Ok(Self::start(store, info, etag, options.lease)),
                Err(StoreError::Locked { location, holder }) => (location, holder),
                Err(error) => return Err(error),
            };
            if holder.id == id {
                // Our create landed but its answer was lost and the retry was refused.
                if let Some(current) = store.read_lock().await? {
                    if current.value.id == id {
                        return Ok(Self::start(store, current.value, current.etag, options.lease));
                    }
                }
                continue;
            }
            if options.break_expired && lease_expired(&holder, now) && break_lock(&*store, &holder, Expired).await? {
                continue;
            }
            if holder_is_gone(&holder) && break_lock(&*store, &holder, HolderGone).await? {
                continue;
            }
            let waited = started.elapsed();
            if waited >= options.timeout {
                return Err(StoreError::Locked { location, holder });
            }
            if !announced {
                tracing::info!(
                    "waiting up to {:?} for the lock on {location}, held by {}",
                    options.timeout,
                    describe_holder(&holder)
                );
                announced = true;
            }
            tokio::time::sleep(options.poll_interval.min(options.timeout - waited)).await;
        }
    }

    fn start(store: Arc<S>, info: LockInfo, etag: String, lease: Duration) -> Self {
        tracing::debug!(id = %info.id, "acquired the state lock");
        let (lost, _) = watch::channel(None);
        let shared = Arc::new(Shared { held: Mutex::new(Held { info, etag }), lost });
        let (stop, stopped) = oneshot::channel();
        let renewer = tokio::spawn(renew_until_stopped(Arc::clone(&store), Arc::clone(&shared), lease, stopped));
        Self { store, shared, lease, stop: Some(stop), renewer: Some(renewer) }
    }

    /// The lock's id, which `unlock --force` names.
    pub fn id(&self) -> String {
        self.shared.snapshot().0.id
    }

    /// The lock as last written, with its current lease.
    pub fn info(&self) -> LockInfo {
        self.shared.snapshot().0
    }

    /// The lease length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Whether a renewal found the lock gone or someone else's, or could not renew it within
    /// its lease.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.borrow().is_some()
    }

    /// [`StoreError::LockLost`] once the lock is lost; call it before starting each step.
    #[allow(clippy::result_large_err)] // StoreError::Locked holds a LockInfo inline (store.rs).
    pub fn check(&self) -> Result<(), StoreError> {
        match &*self.shared.lost.borrow() {
            None => Ok(()),
            Some(_) => Err(self.lost_error()),
        }
    }

    fn lost_error(&self) -> StoreError {
        StoreError::LockLost { location: self.store.location(), id: self.id() }
    }

    /// Completes when the lock is lost (never, while it is held): for `tokio::select!`.
    pub async fn lost(&self) {
        let mut receiver = self.shared.lost.subscribe();
        if receiver.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    async fn stop_renewing(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            // The renewer only stops between renewals, so the ETag recorded is the last one
            // written.
            let _ = renewer.await;
        }
    }

    /// Stops renewing and deletes the lock if it is still ours (`If-Match` on the last ETag).
    /// [`StoreError::LockLost`] when it was lost: someone else's lock is left in place.
    pub async fn release(mut self) -> Result<(), StoreError> {
        self.stop_renewing().await;
        let (info, etag) = self.shared.snapshot();
        match self.store.delete_lock(&etag).await {
            Ok(()) => Ok(()),
            Err(StoreError::LockLost { .. }) => match self.store.read_lock().await? {
                // Our delete landed but its answer was lost, and the SDK's retry found nothing.
                None if !self.is_lost() => Ok(()),
                // Still ours, at another ETag: a renewal landed whose answer was lost.
                Some(Versioned { value, etag }) if value.id == info.id => self.store.delete_lock(&etag).await,
                _ => Err(self.lost_error()),
            },
            Err(error) => Err(error),
        }
    }
}

impl<S: StateStore> Drop for Lock<S> {
    fn drop(&mut self) {
        // Dropping the sender stops the renewer at once, or after a renewal in flight.
        drop(self.stop.take());
    }
}

/// Why a lock that is not ours may be broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breakable {
    /// Its lease ran out.
    Expired,
    /// Its holder was a process of this machine that no longer runs.
    HolderGone,
}

impl Breakable {
    /// Whether `lock` (as stored now) may still be broken for this reason.
    fn holds_for(self, lock: &LockInfo) -> bool {
        match self {
            Self::Expired => lease_expired(lock, OffsetDateTime::now_utc()),
            Self::HolderGone => holder_is_gone(lock),
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Expired => "its lease expired",
            Self::HolderGone => "its holder no longer runs on this machine",
        }
    }
}

/// Deletes `holder`'s lock if it is still the one stored and may still be broken `because`.
/// Returns whether it is gone (deleted by us, or released meanwhile), so acquiring may be
/// tried again at once.
async fn break_lock<S: StateStore>(store: &S, holder: &LockInfo, because: Breakable) -> Result<bool, StoreError> {
    let Some(current) = store.read_lock().await? else { return Ok(true) };
    if current.value.id != holder.id || !because.holds_for(&current.value) {
        return Ok(false);
    }
    tracing::warn!(
        "breaking the lock on {}: {}; it was held by {}",
        store.location(),
        because.reason(),
        describe_holder(&current.value)
    );
    match store.delete_lock(&current.etag).await {
        Ok(()) => Ok(true),
        // Renewed or replaced since we read it: it is alive after all.
        Err(StoreError::LockLost { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

async fn renew_until_stopped<S: StateStore>(
    store: Arc<S>,
    shared: Arc<Shared>,
    lease: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let interval = lease / 3;
    let retry = (interval / 4).max(Duration::from_millis(10));
    let mut renewed_at = Instant::now();
    let mut delay = interval;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(delay) => {}
        }
        let (mut info, etag) = shared.snapshot();
        info.expires_at = lease_end(OffsetDateTime::now_utc(), lease);
        let attempt_at = Instant::now();
        // A renewal that hangs must not outlive the lease: it gets a third of it, and counts
        // as failed when it runs out.
        let renewed = match tokio::time::timeout(interval, store.renew_lock(&info, &etag)).await {
            Ok(renewed) => renewed,
            Err(_) => Err(StoreError::Backend {
                location: store.location(),
                operation: "renewing the lock",
                message: format!("no answer within {interval:?}"),
            }),
        };
        match renewed {
            Ok(etag) => {
                tracing::debug!(id = %info.id, expires_at = %info.expires_at, "renewed the state lock");
                shared.record(info, etag);
                renewed_at = attempt_at;
                delay = interval;
            }
            Err(StoreError::LockLost { location, .. }) => {
                // Our renewal may have landed with its answer lost and the SDK's retry refused.
                if let Ok(Some(current)) = store.read_lock().await {
                    if current.value == info {
                        shared.record(current.value, current.etag);
                        renewed_at = attempt_at;
                        delay = interval;
                        continue;
                    }
                }
                let why = format!("the lock on {location} was removed or taken over by another run");
                tracing::error!("{why}; stopping");
                shared.mark_lost(why);
                return;
            }
            Err(error) => {
                if renewed_at.elapsed() >= lease {
                    let why = format!("the lease ran out before it could be renewed: {error}");
                    tracing::error!("{why}");
                    shared.mark_lost(why);
                    return;
                }
                tracing::warn!("renewing the state lock failed, retrying: {error}");
                delay = retry;
            }
        }
    }
}

/// Why [`force_unlock`] removed nothing.
#[derive(Debug, Error)]
pub enum UnlockError {
    #[error("the state at {location} is not locked; nothing to unlock")]
    NotLocked { location: String },
    #[error(
        "the lock on {location} has id {}, not {given}: it is held by {}; nothing was removed",
        .current.id,
        describe_holder(.current)
    )]
    IdMismatch { location: String, given: String, current: LockInfo },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `unlock --force <lock-id>`: removes the lock if its id is `lock_id`, whoever holds it and
/// whether or not its lease has expired. Returns the lock that was removed.
pub async fn force_unlock<S: StateStore>(store: &S, lock_id: &str) -> Result<LockInfo, UnlockError> {
    let location = store.location();
    let Some(current) = store.read_lock().await? else { return Err(UnlockError::NotLocked { location }) };
    if current.value.id != lock_id {
        return Err(UnlockError::IdMismatch { location, given: lock_id.to_owned(), current: current.value });
    }
    match store.delete_lock(&current.etag).await {
        Ok(()) => {
            tracing::warn!("removed the lock of the state at {location}, held by {}", describe_holder(&current.value));
            Ok(current.value)
        }
        // It changed between our read and our delete: released, renewed or replaced.
        Err(StoreError::LockLost { .. }) => match store.read_lock().await? {
            None => Ok(current.value),
            Some(now) if now.value.id == lock_id => {
                store.delete_lock(&now.etag).await?;
                Ok(now.value)
            }
            Some(now) => Err(UnlockError::IdMismatch { location, given: lock_id.to_owned(), current: now.value }),
        },
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;

    fn options() -> LockOptions {
        LockOptions::new("deploy").poll_interval(Duration::from_millis(20))
    }

    fn foreign(id: &str, expires_at: OffsetDateTime) -> LockInfo {
        LockInfo {
            id: id.to_owned(),
            who: "bob".to_owned(),
            host: "ci-runner".to_owned(),
            pid: 4242,
            operation: "destroy".to_owned(),
            started_at: rfc3339(expires_at - Duration::from_secs(60)),
            expires_at: rfc3339(expires_at),
            process: None,
        }
    }

    #[tokio::test]
    async fn a_lock_whose_holder_on_this_machine_no_longer_runs_is_broken_and_a_live_ones_is_not() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let holder = LockInfo {
            pid,
            process: process_identity(pid),
            ..foreign("killed", OffsetDateTime::now_utc() + Duration::from_secs(60))
        };
        assert!(holder.process.is_some(), "this machine has /proc");
        let store = Arc::new(MemoryStore::new());
        store.put_lock(&holder);
        let Err(error) = Lock::acquire(Arc::clone(&store), &options()).await else {
            panic!("a live holder keeps its lock")
        };
        assert!(matches!(error, StoreError::Locked { .. }), "{error}");

        child.kill().unwrap();
        child.wait().unwrap();
        let lock = Lock::acquire(Arc::clone(&store), &options()).await.expect("a dead holder's lock is broken");
        assert_ne!(lock.id(), "killed");
        // A lock of another machine, or of an older version without the identity, is left to
        // its lease.
        assert!(!holder_is_gone(&LockInfo { process: None, ..holder.clone() }));
        let elsewhere = holder.process.as_deref().map(|p| format!("another-boot{}", &p[p.find('/').unwrap()..]));
        assert!(!holder_is_gone(&LockInfo { process: elsewhere, ..holder }));
        lock.release().await.unwrap();
    }

    #[test]
    fn rfc3339_round_trips_in_whole_seconds() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap() + Duration::from_millis(750);
        let text = rfc3339(at);
        assert_eq!(text, "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339(&text).unwrap().unix_timestamp(), 1_700_000_000);
        assert!(parse_rfc3339("yesterday").is_none());
        assert!(!lease_expired(&foreign("x", at), at - Duration::from_secs(1)));
        assert!(lease_expired(&foreign("x", at), at + Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn acquire_records_the_holder_and_a_second_acquire_fails_naming_it() {
        let store = Arc::new(MemoryStore::new());
        let lock = Lock::acquire(Arc::clone(&store), &options()).await.unwrap();
        let info = store.lock_info().unwrap();
        assert_eq!(info, lock.info());
        assert_eq!((info.pid, info.operation.as_str()), (std::process::id(), "deploy"));
        assert_eq!(info.who, current_user());
        assert_eq!(info.host, hostname());
        let started = parse_rfc3339(&info.started_at).unwrap();
        let expires = parse_rfc3339(&info.expires_at).unwrap();
        assert!(matches!((expires - started).whole_seconds(), 60 | 61), "{started} {expires}");
        assert!(store.raw_lock().unwrap().contains("\n  \"id\": "), "pretty JSON");

        let error = Lock::acquire(Arc::clone(&store), &LockOptions::new("plan")).await.unwrap_err();
        match &error {
            StoreError::Locked { holder, .. } => assert_eq!(holder, &info),
            other => panic!("expected Locked, got {other}"),
        }
        let message = error.to_string();
        for part in [info.who.clone(), info.host.clone(), info.id.clone(), info.pid.to_string(), "`deploy`".to_owned()]
        {
            assert!(message.contains(&part), "{message} should name {part}");
        }
        lock.release().await.unwrap();
        assert!(store.raw_lock().is_none());
    }

    #[tokio::test]
    async fn acquire_waits_for_a_release_within_the_timeout() {
        let store = Arc::new(MemoryStore::new());
        let first = Lock::acquire(Arc::clone(&store), &options()).await.unwrap();
        let waiting = tokio::spawn({
            let store = Arc::clone(&store);
            async move { Lock::acquire(store, &options().timeout(Duration::from_secs(10))).await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiting.is_finished());
        let first_id = first.id();
        first.release().await.unwrap();
        let second = waiting.await.unwrap().unwrap();
        assert_ne!(second.id(), first_id);
        assert_eq!(store.lock_info().unwrap().id, second.id());
        second.release().await.unwrap();
    }

    #[tokio::test]
    async fn acquire_gives_up_after_the_timeout() {
        let store = Arc::new(MemoryStore::new());
        let _held = Lock::acquire(Arc::clone(&store), &options()).await.unwrap();
        let started = Instant::now();
        let error =
            Lock::acquire(Arc::clone(&store), &options().timeout(Duration::from_millis(200))).await.unwrap_err();
        assert!(matches!(error, StoreError::Locked { .. }), "{error}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn the_lease_is_renewed_while_held() {
        let store = Arc::new(MemoryStore::new());
        let lock = Lock::acquire(Arc::clone(&store), &options().lease(Duration::from_millis(300))).await.unwrap();
        let first = store.lock_info().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(store.lock_writes() >= 5, "{} writes", store.lock_writes());
        let renewed = store.lock_info().unwrap();
        assert_eq!(renewed.id, first.id);
        assert_eq!(renewed.started_at, first.started_at);
        assert!(parse_rfc3339(&renewed.expires_at) > parse_rfc3339(&first.expires_at));
        assert!(!lock.is_lost());
        lock.check().unwrap();
        lock.release().await.unwrap();
        assert!(store.raw_lock().is_none(), "released with the latest ETag");
    }

    #[tokio::test]
    async fn a_renewal_that_hangs_loses_the_lock_within_the_lease() {
        let store = Arc::new(MemoryStore::new());
        let lease = Duration::from_millis(300);
        let lock = Lock::acquire(Arc::clone(&store), &options().lease(lease)).await.unwrap();
        store.stall_renewals();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), lock.lost()).await.expect("the hanging renewal gives up");
        assert!(started.elapsed() < lease * 3, "lost after {:?}", started.elapsed());
        assert!(matches!(lock.check(), Err(StoreError::LockLost { .. })));
    }

    #[tokio::test]
    async fn a_lock_taken_over_is_reported_lost_and_not_deleted() {
        let store = Arc::new(MemoryStore::new());
        let lock = Lock::acquire(Arc::clone(&store), &options().lease(Duration::from_millis(300))).await.unwrap();
        let intruder = foreign("intruder", OffsetDateTime::now_utc() + Duration::from_secs(60));
        store.put_lock(&intruder);
        tokio::time::timeout(Duration::from_secs(2), lock.lost()).await.expect("the renewal notices the loss");
        assert!(lock.is_lost());
        assert!(matches!(lock.check(), Err(StoreError::LockLost { .. })));
        let error = lock.release().await.unwrap_err();
        assert!(matches!(error, StoreError::LockLost { .. }), "{error}");
        assert_eq!(store.lock_info().unwrap(), intruder, "someone else's lock survives");
    }

    #[tokio::test]
    async fn an_expired_lease_is_broken_and_a_live_one_is_not() {
        let store = Arc::new(MemoryStore::new());
        store.put_lock(&foreign("crashed", OffsetDateTime::now_utc() - Duration::from_secs(5)));
        let lock = Lock::acquire(Arc::clone(&store), &options()).await.unwrap();
        assert_eq!(store.lock_info().unwrap().id, lock.id());
        lock.release().await.unwrap();

        store.put_lock(&foreign("crashed", OffsetDateTime::now_utc() - Duration::from_secs(5)));
        let error = Lock::acquire(Arc::clone(&store), &options().break_expired(false)).await.unwrap_err();
        assert!(matches!(&error, StoreError::Locked { holder, .. } if holder.id == "crashed"), "{error}");

        store.put_lock(&foreign("alive", OffsetDateTime::now_utc() + Duration::from_secs(30)));
        let error = Lock::acquire(Arc::clone(&store), &options()).await.unwrap_err();
        assert!(matches!(&error, StoreError::Locked { holder, .. } if holder.id == "alive"), "{error}");
        assert_eq!(store.lock_deletes(), 2, "one break, one release");
    }

    #[tokio::test]
    async fn dropping_a_lock_stops_renewing_it() {
        let store = Arc::new(MemoryStore::new());
        let lock = Lock::acquire(Arc::clone(&store), &options().lease(Duration::from_millis(150))).await.unwrap();
        drop(lock);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let writes = store.lock_writes();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.lock_writes(), writes);
        assert!(store.raw_lock().is_some(), "left to expire");
    }

    #[tokio::test]
    async fn force_unlock_checks_the_id() {
        let store = MemoryStore::new();
        let error = force_unlock(&store, "any").await.unwrap_err();
        assert!(matches!(error, UnlockError::NotLocked { .. }), "{error}");

        let stuck = foreign("stuck-id", OffsetDateTime::now_utc() + Duration::from_secs(60));
        store.put_lock(&stuck);
        let error = force_unlock(&store, "other-id").await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("has id stuck-id, not other-id"), "{message}");
        assert!(message.contains("bob on ci-runner"), "{message}");
        assert_eq!(store.lock_info().unwrap(), stuck);

        assert_eq!(force_unlock(&store, "stuck-id").await.unwrap(), stuck);
        assert!(store.raw_lock().is_none());
    }
}
