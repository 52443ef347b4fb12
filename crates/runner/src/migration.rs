//! Migration exports and imports on a farm node (see `mirrorfarm_core::migration::archive` for
//! the archive's format and what the edge decides).
//!
//! An export makes each repository's copy current (a copy whose branches and tags hash to the
//! edge's content hash is, otherwise it is fetched from its upstream), bundles the copies several
//! at a time, writes one tar (the manifest, then the bundles) and streams it to the edge, which
//! stores it in R2.
//!
//! An import streams the archive from the edge to disk, then for each repository in the manifest
//! (origins before forks): unbundles it into a scratch copy, hashes it, asks the edge to create
//! the repository — its project, settings, permissions, hash and this node's copy, in one batch —
//! and only once the edge has, moves the copy into place. The edge answers CANCELLED once cancel
//! was asked, so a cancelled import leaves whole repositories only.
//!
//! `MIRRORFARM_MIGRATION_PAUSE_MS` (tests only) makes an import wait that long between
//! repositories, so a test can cancel it midway deterministically.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mirrorfarm_core::migration::archive::{
    ExportItem, ImportOutcome, ImportedRepository, LeasedExport, LeasedMigration, MANIFEST_NAME, Manifest,
    MigrationProgress,
};
use mirrorfarm_core::migration::{MigrationState, NewMessage, Severity};
use tracing::{info, warn};

use crate::daemon::{NodeSettings, content_hash, copy_of};
use crate::edge::{EdgeClient, EdgeError};
use crate::git::{Git, Remote};
use crate::push;

/// Why an export or import stopped before its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrationError {
    /// The edge could not be reached or refused a call.
    #[error("{0}")]
    Edge(#[from] EdgeError),
    /// A file of the job's scratch space could not be written or read.
    #[error("scratch space: {0}")]
    Io(#[from] std::io::Error),
    /// The archive is not one this node reads.
    #[error("the archive is unreadable: {0}")]
    Archive(String),
}

/// How a migration job ended, for the queue job's report.
pub(crate) struct Ended {
    /// The job's final state.
    pub(crate) state: MigrationState,
    /// What to say about it.
    pub(crate) summary: String,
}

/// Bundles made at once by an export: git is mostly waiting on the disk for small repositories
/// and on one core for large ones, so a few more than the cores.
fn export_parallelism() -> usize {
    std::env::var("MIRRORFARM_MIGRATION_PARALLEL")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| thread::available_parallelism().map_or(2, |n| n.get() * 2).clamp(2, 8))
}

/// How often an export reports its progress (and learns of a cancel).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The test-only pause between imported repositories (see the module's doc).
fn import_pause() -> Duration {
    Duration::from_millis(std::env::var("MIRRORFARM_MIGRATION_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The job's scratch directory (removed when it ends).
fn scratch(settings: &NodeSettings, kind: &str, job_id: i64) -> PathBuf {
    settings.data_dir.join("migration").join(format!("{kind}-{job_id}"))
}

/// Runs a leased export or import to its end and reports its final state; `cancelled` is the
/// node's own stop (shutdown, lost lease).
pub(crate) fn run(
    edge: &EdgeClient,
    settings: &NodeSettings,
    migration: &LeasedMigration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Ended, MigrationError> {
    let (kind, result) = match (&migration.export, &migration.import_archive) {
        (Some(export), _) => ("export", export_archive(edge, settings, migration.job_id, export, cancelled)),
        (None, Some(_)) => ("import", import_archive(edge, settings, migration.job_id, cancelled)),
        (None, None) => return Err(MigrationError::Archive("the job is neither an export nor an import".into())),
    };
    let dir = scratch(settings, kind, migration.job_id);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(dir = %dir.display(), error = %e, "could not remove the migration scratch space");
    }
    let ended = match result {
        Ok(ended) => ended,
        Err(e) => {
            // Told to the edge as the job's end (the queue job reports it too).
            let why = NewMessage::new(Severity::Error, "job", format!("The {kind} failed: {e}"));
            let failed = MigrationProgress {
                state: Some(MigrationState::Failed),
                message: Some(format!("Failed: {e}")),
                messages: vec![why],
                ..MigrationProgress::default()
            };
            if let Err(report) = edge.migration_progress(migration.job_id, &failed) {
                warn!(job = migration.job_id, error = %report, "could not report the failure");
            }
            return Err(e);
        }
    };
    let end = MigrationProgress {
        state: Some(ended.state),
        percentage: (ended.state == MigrationState::Completed).then_some(100),
        message: Some(ended.summary.clone()),
        messages: vec![NewMessage::new(Severity::Info, "job", ended.summary.clone())],
        archive_written: kind == "export" && ended.state == MigrationState::Completed,
    };
    edge.migration_progress(migration.job_id, &end)?;
    Ok(ended)
}

/// One repository bundled (or not) by an export worker.
struct Bundled {
    index: usize,
    bundle: Option<String>,
    hash: Option<String>,
    messages: Vec<NewMessage>,
}

/// The branches and tags a bundle carries, read from its header (`# v2 git bundle`, then
/// `-<oid>` prerequisites and `<oid> <ref>` lines, then an empty line): what the copy held when it
/// was bundled, without another git process.
fn bundle_refs(bundle: &Path) -> Result<mirrorfarm_core::sync::Refs, String> {
    let mut header = Vec::new();
    let mut reader = std::io::BufReader::new(File::open(bundle).map_err(|e| e.to_string())?);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).map_err(|e| e.to_string())?;
    if !first.starts_with("# v2 git bundle") && !first.starts_with("# v3 git bundle") {
        return Err(format!("not a git bundle: {:?}", first.trim()));
    }
    loop {
        let mut line = Vec::new();
        let n = std::io::BufRead::read_until(&mut reader, b'\n', &mut line).map_err(|e| e.to_string())?;
        if n == 0 || line == b"\n" {
            break;
        }
        // Prerequisites (`-`) and v3 capabilities (`@`) are not refs.
        if !line.starts_with(b"-") && !line.starts_with(b"@") {
            header.extend(line);
        }
    }
    crate::git::parse_listing(&header, ' ').map_err(|e| e.to_string())
}

/// Bundles the copy into `file`; answers the refs it carries (none: the copy has no content).
fn bundle_copy(copy: &Git, file: &Path) -> Result<Option<mirrorfarm_core::sync::Refs>, String> {
    if !copy.exists() {
        return Ok(None);
    }
    match copy.create_bundle(file) {
        Ok(()) => bundle_refs(file).map(Some),
        // git refuses to bundle nothing: a copy without branches or tags.
        Err(e) if copy.local_refs().is_ok_and(|r| r.is_empty()) => {
            tracing::debug!(error = %e, "empty copy, no bundle");
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Bundles one repository's copy into `dir`, making it current first: a copy whose bundled
/// branches and tags hash to the edge's content hash is current (one git process, the bundle);
/// any other is fetched from its upstream and bundled again.
fn bundle_one(settings: &NodeSettings, dir: &Path, index: usize, item: &ExportItem) -> Bundled {
    let subject = item.entry.subject();
    let mut messages = Vec::new();
    let copy = copy_of(settings, item.repository_id);
    let file = dir.join(format!("{index}.bundle"));
    let mut bundled = bundle_copy(&copy, &file);
    let current =
        matches!(&bundled, Ok(Some(refs)) if item.content_hash.as_deref() == Some(content_hash(refs).as_str()));
    if !current && let Some(url) = &item.fetch_url {
        let fetched = Remote::parse(url).map_err(|e| e.to_string()).and_then(|remote| {
            push::pull(&copy, &remote, &push::exact_pull(), &item.entry.default_branch, &[]).map_err(|e| e.to_string())
        });
        match fetched {
            Ok(_) => bundled = bundle_copy(&copy, &file),
            Err(e) => {
                let text = if copy.exists() {
                    format!("Could not bring the copy up to date ({e}); the copy as it was is exported.")
                } else {
                    format!("Could not fetch the repository ({e}); it is exported without content.")
                };
                messages.push(NewMessage::new(Severity::Warn, subject.as_str(), text));
            }
        }
    }
    match bundled {
        Ok(Some(refs)) if !refs.is_empty() => {
            let hash = Some(content_hash(&refs));
            Bundled { index, bundle: Some(format!("repositories/{index}.bundle")), hash, messages }
        }
        Ok(_) => {
            let _ = std::fs::remove_file(&file);
            messages.push(NewMessage::new(
                Severity::Info,
                subject.as_str(),
                "The repository has no content to bundle.",
            ));
            Bundled { index, bundle: None, hash: None, messages }
        }
        Err(e) => {
            messages.push(NewMessage::new(Severity::Error, subject.as_str(), format!("Could not bundle it: {e}")));
            Bundled { index, bundle: None, hash: None, messages }
        }
    }
}

/// The export: bundles, the tar, the upload.
fn export_archive(
    edge: &EdgeClient,
    settings: &NodeSettings,
    job_id: i64,
    export: &LeasedExport,
    cancelled: &dyn Fn() -> bool,
) -> Result<Ended, MigrationError> {
    let dir = scratch(settings, "export", job_id);
    std::fs::create_dir_all(&dir)?;
    let total = export.items.len();
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Bundled>();
    let mut manifest = export.manifest.clone();
    let mut errors = 0usize;
    let mut edge_state = MigrationState::Running;
    let started = std::time::Instant::now();
    thread::scope(|scope| -> Result<(), MigrationError> {
        for _ in 0..export_parallelism().min(total.max(1)) {
            let (tx, stop, next, dir) = (tx.clone(), &stop, &next, &dir);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total || stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if tx.send(bundle_one(settings, dir, i, &export.items[i])).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0usize;
        let mut pending = Vec::new();
        let mut reported = std::time::Instant::now();
        for bundled in rx {
            done += 1;
            errors += bundled.messages.iter().filter(|m| m.severity == Severity::Error).count();
            if let Some(entry) = manifest.repositories.get_mut(bundled.index) {
                entry.bundle = bundled.bundle;
                entry.content_hash = bundled.hash;
            }
            pending.extend(bundled.messages);
            // At most one report a second (each is an edge round trip): cancel still lands within one.
            if done < total && reported.elapsed() < REPORT_EVERY {
                continue;
            }
            reported = std::time::Instant::now();
            // Bundling is most of the work; the tar and its upload the last tenth.
            let progress = MigrationProgress {
                percentage: Some(u32::try_from(done * 90 / total.max(1)).unwrap_or(90)),
                message: Some(format!("Bundled {done} of {total} repositories")),
                messages: std::mem::take(&mut pending),
                ..MigrationProgress::default()
            };
            match edge.migration_progress(job_id, &progress) {
                Ok(state) => edge_state = state,
                Err(e) => warn!(job = job_id, error = %e, "could not report progress"),
            }
            if edge_state != MigrationState::Running || cancelled() {
                stop.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    })?;
    if cancelled() && edge_state == MigrationState::Running {
        return Err(MigrationError::Archive("the node is stopping".into()));
    }
    if edge_state != MigrationState::Running {
        return Ok(Ended { state: MigrationState::Canceled, summary: "The export was cancelled.".into() });
    }
    info!(job = job_id, repositories = total, secs = started.elapsed().as_secs_f64(), "bundled");
    let tar_path = dir.join("archive.tar");
    write_tar(&tar_path, &manifest, &dir)?;
    let progress = MigrationProgress {
        state: Some(MigrationState::Finalising),
        percentage: Some(95),
        message: Some("Uploading the archive".into()),
        ..MigrationProgress::default()
    };
    edge.migration_progress(job_id, &progress)?;
    edge.upload_archive(job_id, &tar_path)?;
    let size = std::fs::metadata(&tar_path).map_or(0, |m| m.len());
    info!(job = job_id, bytes = size, "archive uploaded");
    let state = if errors > 0 { MigrationState::Failed } else { MigrationState::Completed };
    let summary =
        format!("Exported {total} repositories ({size} bytes){}.", if errors > 0 { " with errors" } else { "" });
    Ok(Ended { state, summary })
}

/// Writes the archive: `manifest.json`, then each bundle under its manifest name.
fn write_tar(path: &Path, manifest: &Manifest, dir: &Path) -> Result<(), MigrationError> {
    let mut tar = tar::Builder::new(BufWriter::new(File::create(path)?));
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| MigrationError::Archive(e.to_string()))?;
    let mut header = tar::Header::new_ustar();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, MANIFEST_NAME, json.as_slice())?;
    for (index, entry) in manifest.repositories.iter().enumerate() {
        if let Some(name) = &entry.bundle {
            tar.append_path_with_name(dir.join(format!("{index}.bundle")), name)?;
        }
    }
    tar.into_inner()?.into_inner().map_err(|e| MigrationError::Io(e.into_error()))?;
    Ok(())
}

/// Reads the archive at `path`: its manifest, and its bundles written into `dir` by name.
fn read_tar(path: &Path, dir: &Path) -> Result<(Manifest, HashMap<String, PathBuf>), MigrationError> {
    let mut archive = tar::Archive::new(File::open(path)?);
    let mut manifest = None;
    let mut bundles = HashMap::new();
    for (n, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if name == MANIFEST_NAME {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            manifest = Some(Manifest::parse(&bytes).map_err(|e| MigrationError::Archive(e.to_string()))?);
            continue;
        }
        // Only `repositories/<n>.bundle`: nothing of the archive is written anywhere else.
        let plain = name
            .strip_prefix("repositories/")
            .and_then(|rest| rest.strip_suffix(".bundle"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !plain {
            return Err(MigrationError::Archive(format!("unexpected entry {name:?}")));
        }
        let file = dir.join(format!("{n}.bundle"));
        std::io::copy(&mut entry, &mut File::create(&file)?)?;
        bundles.insert(name, file);
    }
    let manifest = manifest.ok_or_else(|| MigrationError::Archive(format!("no {MANIFEST_NAME}")))?;
    Ok((manifest, bundles))
}

/// Unbundles repository `index` into its scratch copy; answers its content hash (none: no
/// content). The export's recorded hash must match, or it is not imported.
fn unbundle_one(
    dir: &Path,
    index: usize,
    repository: &mirrorfarm_core::migration::archive::ManifestRepository,
    bundles: &HashMap<String, PathBuf>,
) -> Result<Option<String>, String> {
    let Some(name) = &repository.bundle else { return Ok(None) };
    let bundle = bundles.get(name).ok_or_else(|| format!("its bundle {name} is not in the archive"))?;
    let copy = Git::in_dir(dir.join("repos").join(format!("{index}.git")));
    copy.ensure_bare().map_err(|e| e.to_string())?;
    copy.fetch_bundle(bundle).map_err(|e| e.to_string())?;
    let hash = content_hash(&copy.local_refs().map_err(|e| e.to_string())?);
    if repository.content_hash.as_ref().is_some_and(|want| *want != hash) {
        return Err("its content does not hash to what the export recorded".into());
    }
    Ok(Some(hash))
}

/// The import: download, then each repository whole, in manifest order, stopping between
/// repositories on cancel. Unbundling runs a few repositories ahead on worker threads; the
/// edge's creations stay one at a time, in order (origins before forks).
fn import_archive(
    edge: &EdgeClient,
    settings: &NodeSettings,
    job_id: i64,
    cancelled: &dyn Fn() -> bool,
) -> Result<Ended, MigrationError> {
    let dir = scratch(settings, "import", job_id);
    let bundles_dir = dir.join("bundles");
    std::fs::create_dir_all(&bundles_dir)?;
    let tar_path = dir.join("archive.tar");
    let bytes = edge.download_archive(job_id, &tar_path)?;
    info!(job = job_id, bytes, "archive downloaded");
    let (manifest, bundles) = read_tar(&tar_path, &bundles_dir)?;
    std::fs::remove_file(&tar_path)?;
    let total = manifest.repositories.len();
    let workers = export_parallelism();
    let ahead = workers * 2;
    let (next, processed, stop) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(usize, Result<Option<String>, String>)>();
    thread::scope(|scope| {
        for _ in 0..workers.min(total.max(1)) {
            let (tx, next, processed, stop, dir, bundles, manifest) =
                (tx.clone(), &next, &processed, &stop, &dir, &bundles, &manifest);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        return;
                    }
                    // No further ahead than `ahead` repositories of the ones the edge has taken.
                    while i >= processed.load(Ordering::SeqCst) + ahead && !stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(5));
                    }
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if tx.send((i, unbundle_one(dir, i, &manifest.repositories[i], bundles))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let result = create_in_order(edge, settings, job_id, &manifest, &dir, &rx, &processed, cancelled);
        stop.store(true, Ordering::SeqCst);
        result
    })
}

/// The edge side of an import: each repository's creation, in order, as its unbundled copy comes in.
#[allow(clippy::too_many_arguments)]
fn create_in_order(
    edge: &EdgeClient,
    settings: &NodeSettings,
    job_id: i64,
    manifest: &Manifest,
    dir: &Path,
    rx: &mpsc::Receiver<(usize, Result<Option<String>, String>)>,
    processed: &AtomicUsize,
    cancelled: &dyn Fn() -> bool,
) -> Result<Ended, MigrationError> {
    let total = manifest.repositories.len();
    let (mut created, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    let pause = import_pause();
    let mut problems: Vec<NewMessage> = Vec::new();
    let mut ready: HashMap<usize, Result<Option<String>, String>> = HashMap::new();
    for (index, repository) in manifest.repositories.iter().enumerate() {
        if cancelled() {
            return Err(MigrationError::Archive("the node is stopping".into()));
        }
        if index > 0 && !pause.is_zero() {
            thread::sleep(pause);
        }
        let unbundled = loop {
            if let Some(done) = ready.remove(&index) {
                break done;
            }
            match rx.recv() {
                Ok((i, done)) => {
                    ready.insert(i, done);
                }
                Err(_) => break Err("the unbundling stopped".into()),
            }
        };
        processed.store(index + 1, Ordering::SeqCst);
        let subject = repository.subject();
        let copy_dir = dir.join("repos").join(format!("{index}.git"));
        let project = manifest.project_of(repository);
        let hash = match (project, unbundled) {
            (Some(_), Ok(hash)) => hash,
            (None, _) => {
                let text = "The manifest names no project for it; it was not imported.";
                problems.push(NewMessage::new(Severity::Error, subject.as_str(), text));
                failed += 1;
                continue;
            }
            (_, Err(e)) => {
                let text = format!("Could not unbundle it ({e}); it was not imported.");
                problems.push(NewMessage::new(Severity::Error, subject.as_str(), text));
                failed += 1;
                if copy_dir.exists() {
                    std::fs::remove_dir_all(&copy_dir)?;
                }
                continue;
            }
        };
        let Some(project) = project else { continue };
        // Problems found so far ride along with the next call that reaches the edge.
        if !problems.is_empty() {
            let messages = std::mem::take(&mut problems);
            edge.migration_progress(job_id, &MigrationProgress { messages, ..MigrationProgress::default() })?;
        }
        let imported = ImportedRepository {
            project: project.clone(),
            repository: repository.clone(),
            content_hash: hash.clone(),
            percentage: u32::try_from((index + 1) * 100 / total.max(1)).unwrap_or(100).min(99),
        };
        let answer = edge.import_repository(job_id, &imported)?;
        match answer.outcome {
            ImportOutcome::Created => {
                created += 1;
                if let (Some(id), Some(_)) = (answer.repository_id, &hash) {
                    let place = copy_of(settings, id);
                    if let Some(target) = place.dir() {
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        if target.exists() {
                            std::fs::remove_dir_all(target)?;
                        }
                        std::fs::rename(&copy_dir, target)?;
                    }
                }
                info!(job = job_id, repository = %subject, "imported");
            }
            ImportOutcome::Skipped => {
                skipped += 1;
                info!(job = job_id, repository = %subject, "exists; skipped");
            }
            ImportOutcome::Cancelled => {
                let summary = format!(
                    "The import was cancelled after {created} of {total} repositories ({skipped} skipped, {failed} failed)."
                );
                return Ok(Ended { state: MigrationState::Canceled, summary });
            }
        }
        if copy_dir.exists() {
            std::fs::remove_dir_all(&copy_dir)?;
        }
    }
    if !problems.is_empty() {
        let messages = std::mem::take(&mut problems);
        edge.migration_progress(job_id, &MigrationProgress { messages, ..MigrationProgress::default() })?;
    }
    let state = if failed > 0 { MigrationState::Failed } else { MigrationState::Completed };
    let summary = format!("Imported {created} of {total} repositories ({skipped} skipped, {failed} failed).");
    Ok(Ended { state, summary })
}

#[cfg(test)]
mod tests {
    use mirrorfarm_core::migration::archive::{FORMAT, ManifestProject, ManifestRepository};

    use super::*;
    use crate::testing::git;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mirrorfarm-migration-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    /// A bare repository with two branches, an annotated tag and a lightweight one.
    fn repository(dir: &Path) -> Git {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&work, &["branch", "dev"]);
        git(&work, &["commit", "-q", "--allow-empty", "-m", "two"]);
        git(&work, &["tag", "-a", "v1", "-m", "release"]);
        git(&work, &["tag", "light"]);
        let bare = dir.join("copy.git");
        git(dir, &["clone", "-q", "--bare", &work.to_string_lossy(), &bare.to_string_lossy()]);
        Git::in_dir(bare)
    }

    #[test]
    fn a_bundle_carries_the_copys_branches_and_tags_and_unbundles_to_the_same_hash() {
        let dir = scratch_dir("bundle");
        let copy = repository(&dir);
        let file = dir.join("0.bundle");
        let refs = bundle_copy(&copy, &file).expect("bundled").expect("has content");
        assert_eq!(refs, copy.local_refs().expect("refs"), "the header lists what for-each-ref does");
        assert_eq!(refs.len(), 4);
        let entry = ManifestRepository {
            project_key: "P".into(),
            slug: "r".into(),
            name: "r".into(),
            description: None,
            default_branch: "main".into(),
            public: false,
            forkable: true,
            upstream_url: None,
            labels: vec![],
            grants: vec![],
            pull_mirror: None,
            fork: None,
            bundle: Some("repositories/0.bundle".into()),
            content_hash: Some(content_hash(&refs)),
        };
        let bundles = HashMap::from([("repositories/0.bundle".to_owned(), file.clone())]);
        let hash = unbundle_one(&dir, 0, &entry, &bundles).expect("unbundled");
        assert_eq!(hash, entry.content_hash);
        // A bundle that does not hash to what the export recorded is refused.
        let wrong = ManifestRepository { content_hash: Some("0".repeat(64)), ..entry };
        assert!(unbundle_one(&dir, 1, &wrong, &bundles).is_err());
        // An empty copy has no bundle, and is no error.
        let empty = Git::in_dir(dir.join("empty.git"));
        empty.ensure_bare().expect("init");
        assert_eq!(bundle_copy(&empty, &dir.join("e.bundle")), Ok(None));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_archive_reads_back_and_writes_nothing_outside_its_directory() {
        let dir = scratch_dir("tar");
        std::fs::write(dir.join("0.bundle"), b"bundle bytes").expect("bundle");
        let repository = |bundle: Option<&str>| ManifestRepository {
            project_key: "P".into(),
            slug: "r".into(),
            name: "r".into(),
            description: None,
            default_branch: "main".into(),
            public: false,
            forkable: true,
            upstream_url: None,
            labels: vec![],
            grants: vec![],
            pull_mirror: None,
            fork: None,
            bundle: bundle.map(str::to_owned),
            content_hash: None,
        };
        let manifest = Manifest {
            format: FORMAT.into(),
            export_job_id: 1,
            exported_at: 1,
            projects: vec![ManifestProject {
                key: "P".into(),
                name: "P".into(),
                description: None,
                public: false,
                grants: vec![],
            }],
            repositories: vec![repository(Some("repositories/0.bundle")), repository(None)],
        };
        let tar_path = dir.join("a.tar");
        write_tar(&tar_path, &manifest, &dir).expect("written");
        let out = dir.join("out");
        std::fs::create_dir_all(&out).expect("out");
        let (read, bundles) = read_tar(&tar_path, &out).expect("read");
        assert_eq!(read, manifest);
        let file = bundles.get("repositories/0.bundle").expect("the bundle");
        assert_eq!(std::fs::read(file).expect("bytes"), b"bundle bytes");

        // An entry named anything else is refused (and nothing is ever written under an entry's
        // own name: bundles are stored by their place in the archive).
        let evil = dir.join("evil.tar");
        let mut tar = tar::Builder::new(File::create(&evil).expect("file"));
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "hooks/post-receive", &b"x"[..]).expect("append");
        tar.into_inner().expect("finish");
        assert!(matches!(read_tar(&evil, &out), Err(MigrationError::Archive(_))));
        assert!(!out.join("hooks").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
