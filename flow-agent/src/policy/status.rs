//! What `webb status` says about an agent's policy: the revision in force and, while the files
//! on disk are rejected, why (file, document, line, field). Served beside `ServerStatus` as
//! `webb.v1.StatusExtras`.

use std::path::Path;
use std::sync::Mutex;

use flow_observer::StatusExtrasSource;
use webb_proto::Timestamp;
use webb_proto::webb_v1::{NodePolicyStatus, PolicyLoadError, StatusExtras};

use super::PolicyError;

/// The agent's policy state; shared by the control loop (writer) and the Observer (reader).
#[derive(Debug)]
pub struct PolicyStatus {
    inner: Mutex<NodePolicyStatus>,
}

impl PolicyStatus {
    /// `source`: the `--policy` path, `None` when the agent runs without policies.
    pub fn new(node: &str, source: Option<&Path>) -> Self {
        PolicyStatus {
            inner: Mutex::new(NodePolicyStatus {
                node: node.to_string(),
                source: source.map(|p| p.display().to_string()).unwrap_or_default(),
                ..Default::default()
            }),
        }
    }

    fn update(&self, f: impl FnOnce(&mut NodePolicyStatus)) {
        // A poisoned lock only means a writer panicked mid-update; the fields are plain values.
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    /// The datapath revision in force and its policies; the time is kept from when the
    /// revision changed, so the control loop may call this on every tick.
    pub fn in_force(&self, revision: u32, policies: usize) {
        self.update(|s| {
            if s.revision != revision || s.applied.is_none() {
                s.applied = Some(Timestamp::now());
            }
            s.revision = revision;
            s.policies = u32::try_from(policies).unwrap_or(u32::MAX);
        });
    }

    /// The files on disk were loaded and are the policy in force: no error to report.
    pub fn loaded(&self) {
        self.update(|s| s.error = None);
    }

    /// A load was rejected; the policy in force stays. `message` is what the agent logged.
    pub fn rejected(&self, error: Option<&PolicyError>, message: &str) {
        let mut e = PolicyLoadError {
            message: message.to_string(),
            time: Some(Timestamp::now()),
            ..Default::default()
        };
        match error {
            Some(PolicyError::Io { file, .. }) => e.file = file.clone(),
            Some(PolicyError::Invalid {
                file,
                document,
                line,
                field,
                ..
            }) => {
                e.file = file.clone();
                e.document = u32::try_from(*document).unwrap_or(u32::MAX);
                e.line = *line;
                e.field = field.clone();
            }
            None => {}
        }
        self.update(|s| {
            if e.file.is_empty() {
                e.file = s.source.clone();
            }
            s.error = Some(e);
            s.rejected += 1;
        });
    }

    pub fn snapshot(&self) -> NodePolicyStatus {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl StatusExtrasSource for PolicyStatus {
    fn status_extras(&self) -> StatusExtras {
        StatusExtras {
            policy: vec![self.snapshot()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_load_names_file_document_line_and_field_until_a_good_load() {
        let st = PolicyStatus::new("n1", Some(Path::new("/etc/webb/policy")));
        st.in_force(2, 3);
        st.loaded();
        let bad = super::super::parse(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec:\n  endpointSelector: {}\n  ingres: []\n",
            "/etc/webb/policy/a.yaml",
        )
        .unwrap_err();
        st.rejected(Some(&bad), &bad.to_string());
        let s = st.snapshot();
        assert_eq!((s.revision, s.policies, s.rejected), (2, 3, 1));
        let e = s.error.expect("the rejected load");
        assert_eq!(e.file, "/etc/webb/policy/a.yaml");
        assert_eq!(e.document, 1);
        assert!(e.line >= 1, "{e:?}");
        assert!(e.message.contains("ingres"), "{}", e.message);

        // A datapath failure has no file of its own: the source names it.
        st.rejected(None, "cannot install");
        assert_eq!(st.snapshot().error.unwrap().file, "/etc/webb/policy");

        st.in_force(3, 1);
        st.loaded();
        let s = st.snapshot();
        assert_eq!((s.revision, s.rejected), (3, 2));
        st.in_force(3, 1);
        assert_eq!(st.snapshot().applied, s.applied, "same revision, same time");
        assert!(s.error.is_none());
        assert_eq!(st.status_extras().policy, vec![s]);
    }
}
