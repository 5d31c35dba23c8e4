//! The standalone endpoints file (the one the agents read with `--endpoints`), watched by the
//! relay so that the series of an endpoint removed from it go after the grace period
//! ([`Metrics::forget_endpoints`]) and those of one that comes back stay
//! ([`Metrics::endpoint_returned`]).
//!
//! Only `namespace`, `name` and `ips` of each endpoint matter here; the agents validate the
//! rest of the file.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Deserialize;

use super::{EndpointRef, Metrics};

/// A bad or unreadable endpoints file; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum EndpointsFileError {
    #[error("{file}: cannot read the endpoints file: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: invalid endpoints file: {message}")]
    Invalid { file: String, message: String },
}

#[derive(Deserialize)]
struct FileSpec {
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
}

#[derive(Deserialize)]
struct EndpointSpec {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    ips: Vec<IpAddr>,
}

/// The endpoints of a file by `(namespace, name)` (namespace `default` when left out, as the
/// agents read it).
pub fn parse_endpoints(
    file: &str,
    text: &str,
) -> Result<BTreeMap<(String, String), EndpointRef>, EndpointsFileError> {
    let spec: FileSpec = serde_saphyr::from_str(text).map_err(|e| EndpointsFileError::Invalid {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    Ok(spec
        .endpoints
        .into_iter()
        .map(|e| {
            let namespace = e
                .namespace
                .map(|n| n.trim().to_string())
                .unwrap_or_else(|| "default".into());
            let pod = e.name.trim().to_string();
            (
                (namespace.clone(), pod.clone()),
                EndpointRef {
                    namespace,
                    pod,
                    ips: e.ips,
                },
            )
        })
        .collect())
}

/// Follows one endpoints file: call [`EndpointsWatch::poll`] periodically.
#[derive(Debug)]
pub struct EndpointsWatch {
    path: PathBuf,
    modified: Option<SystemTime>,
    known: BTreeMap<(String, String), EndpointRef>,
}

impl EndpointsWatch {
    /// Reads the file once; a file that cannot be read or parsed is an error here (at start),
    /// and only a warning on later polls.
    pub fn open(path: &Path) -> Result<Self, EndpointsFileError> {
        let mut w = Self {
            path: path.to_path_buf(),
            modified: None,
            known: BTreeMap::new(),
        };
        let (modified, known) = w.read()?;
        w.modified = modified;
        w.known = known;
        Ok(w)
    }

    #[allow(clippy::type_complexity)]
    fn read(
        &self,
    ) -> Result<(Option<SystemTime>, BTreeMap<(String, String), EndpointRef>), EndpointsFileError>
    {
        let file = self.path.display().to_string();
        let read = |source| EndpointsFileError::Read {
            file: file.clone(),
            source,
        };
        let modified = std::fs::metadata(&self.path).map_err(read)?.modified().ok();
        let text = std::fs::read_to_string(&self.path).map_err(read)?;
        Ok((modified, parse_endpoints(&file, &text)?))
    }

    /// Re-reads the file when it changed: endpoints no longer listed are handed to
    /// [`Metrics::forget_endpoints`], listed ones that were pending come back. Returns how many
    /// endpoints went and came.
    pub fn poll(
        &mut self,
        metrics: &Metrics,
        now: Instant,
    ) -> Result<(usize, usize), EndpointsFileError> {
        let modified = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| m.modified().ok());
        if modified.is_some() && modified == self.modified {
            return Ok((0, 0));
        }
        let (modified, current) = self.read()?;
        self.modified = modified;
        let gone: Vec<EndpointRef> = self
            .known
            .iter()
            .filter(|(k, _)| !current.contains_key(*k))
            .map(|(_, e)| e.clone())
            .collect();
        let came: Vec<&(String, String)> = current
            .keys()
            .filter(|k| !self.known.contains_key(*k))
            .collect();
        for (ns, pod) in &came {
            metrics.endpoint_returned(ns, pod);
        }
        let counts = (gone.len(), came.len());
        if !gone.is_empty() {
            metrics.forget_endpoints(&gone, now);
        }
        self.known = current;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::MetricsConfig;

    const TWO: &str = "endpoints:\n  - {name: web-1, namespace: shop, ips: [198.18.0.10]}\n  - {name: db-0, ips: [198.18.0.11, \"2001:2::11\"], labels: {app: db}}\nnodes:\n  - {name: n1, ips: [198.18.0.1]}\n";
    const ONE: &str =
        "endpoints:\n  - {name: db-0, ips: [198.18.0.11, \"2001:2::11\"], labels: {app: db}}\n";

    /// A file of its own under the temp dir, removed on drop.
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(tag: &str, text: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "webb-relay-endpoints-{}-{tag}.yaml",
                std::process::id()
            ));
            std::fs::write(&p, text).unwrap();
            TempFile(p)
        }
        fn write(&self, text: &str) {
            std::fs::write(&self.0, text).unwrap();
            // A distinct modification time even on a coarse clock.
            let t = std::fs::metadata(&self.0).unwrap().modified().unwrap()
                + std::time::Duration::from_secs(1);
            std::fs::File::options()
                .write(true)
                .open(&self.0)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn metrics() -> Metrics {
        Metrics::new(&MetricsConfig::from_flag("flow").unwrap()).unwrap()
    }

    #[test]
    fn endpoints_are_keyed_by_namespace_and_name_with_default_as_the_agents_read_it() {
        let eps = parse_endpoints("f.yaml", TWO).unwrap();
        let keys: Vec<_> = eps.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                ("default".to_string(), "db-0".to_string()),
                ("shop".to_string(), "web-1".to_string())
            ]
        );
        assert_eq!(eps[&("default".into(), "db-0".into())].ips.len(), 2);
    }

    #[test]
    fn a_bad_file_is_an_error_naming_it() {
        let err = parse_endpoints("/etc/webb/eps.yaml", "endpoints: [{ips: 3}]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/webb/eps.yaml: invalid endpoints file"),
            "{err}"
        );
        let missing = EndpointsWatch::open(Path::new("/nonexistent/eps.yaml")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/eps.yaml"),
            "{missing}"
        );
    }

    #[test]
    fn poll_reports_removed_and_returning_endpoints_only_when_the_file_changes() {
        let file = TempFile::new("poll", TWO);
        let m = metrics();
        let mut w = EndpointsWatch::open(&file.0).unwrap();
        let now = Instant::now();
        assert_eq!(w.poll(&m, now).unwrap(), (0, 0));
        file.write(ONE);
        assert_eq!(w.poll(&m, now).unwrap(), (1, 0), "web-1 went");
        assert_eq!(w.poll(&m, now).unwrap(), (0, 0), "unchanged file");
        file.write(TWO);
        assert_eq!(w.poll(&m, now).unwrap(), (0, 1), "web-1 came back");
        file.write("endpoints: [");
        assert!(w.poll(&m, now).is_err(), "a broken file is reported");
    }
}
