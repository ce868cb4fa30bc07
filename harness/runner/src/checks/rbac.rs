//! RBAC checks: Kubernetes decisions and their consistency with Contrail RBAC.
//!
//! For one subject (`as:`) and each request of `allowed:` and `denied:`:
//!
//! - a **kubernetes** cell (`port` = `kubernetes`): a SubjectAccessReview (authorization.k8s.io/v1)
//!   through the kube client decides the request; it must match the scenario. The oracle's
//!   decision ([`Rbac::decide`] over the cluster's Roles and bindings, listed through the same
//!   client) is put in the explanation, so a person sees which binding and rule should decide.
//! - with `contrail: consistent`, a **contrail** cell (`port` = `contrail`): the request is
//!   mapped onto Contrail object types and CRUD letters ([`Rbac::contrail_expectation`] with the
//!   context's [`ContrailMapping`]), the VNC API is called *as the subject* once per (object type,
//!   letter), and every answer must equal the Kubernetes decision. A mismatch fails the cell and
//!   names both decisions and the api-access-list rule involved.
//!
//! # How the Contrail API is asked, without side effects
//!
//! The VNC API server decides RBAC per request *before* it runs the handler (the real server's
//! `handler_trap_exception` calls `VncRbac.validate_request` first; the mock's dispatcher calls
//! `rbac::authorize` first), from the caller's roles, the project's api-access-list and the
//! operation letter of the HTTP method. So each letter is exercised by a real call that the
//! server authorizes and then refuses for a reason that changes nothing:
//!
//! | letter | call | when authorized |
//! |---|---|---|
//! | R | `GET /<type>s?count=True` (in the project when the type lives in projects) | 200 |
//! | C | `POST /<type>s` with a body carrying the unknown field `harness_rbac_probe` | 400 |
//! | U | `PUT /<type>/<probe uuid>` with that body, for a uuid no object has | 400 or 404 |
//! | D | `DELETE /<type>/<probe uuid>` | 404 |
//!
//! 403 means denied; 400, 404 and 409 mean the call got past RBAC. Should a server create the
//! probe object anyway (a 2xx to the POST), it is deleted again at once through the harness's
//! own client and the cell says so.
//!
//! Errors of either API server (unreachable, 5xx, a 401 for the subject's identity) make the
//! cell inconclusive with the cause, never passed or failed.
//!
//! Both systems follow RBAC objects eventually (the API server's authorizer cache, the
//! kube-manager writing api-access-lists), so a cell that does not have its expected answer
//! yet is asked again until [`RbacContext::within`] has passed since the check started; a
//! passing cell records when it converged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness_contrail_vnc::schema::{self, TypeInfo};
use harness_contrail_vnc::{Auth, VncClient, VncObject};
use harness_oracle::{Cluster, ContrailAccess, ContrailMapping, Crud, Rbac};
use harness_report::model::{CellResult, Outcome};
use harness_scenario::model::{ClusterSpec, ContrailRbac, ContrailSettings, RbacCheck, Subject};
use harness_scenario::rbac::RbacRequest;
use http::Method;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ObjectList, PostParams};
use serde_json::{Value, json};

/// How long cells may take to converge unless the context says otherwise.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(5);

/// How often a cell that has not reached its expected answer is asked again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The Contrail domain the namespace projects live in.
const DOMAIN: &str = "default-domain";

/// A uuid no object has: the target of the U and D probes.
const PROBE_UUID: &str = "00000000-0000-4000-8000-0000000000ff";

/// The field that makes a C or U probe's body invalid after RBAC has let it through.
const PROBE_FIELD: &str = "harness_rbac_probe";

/// How to call the Contrail API as a Kubernetes subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ContrailIdentity {
    /// Identity headers as keystone's middleware sets them: `X-User`, `X-Role` (the subject's
    /// Contrail roles from [`harness_contrail_mock::kube_manager::subject_roles`]:
    /// `user:<name>`, `group:<group>` and the groups Kubernetes adds) and `X-Project-Id` (the
    /// uuid of project `<cluster>-<namespace>` for a namespaced request). The mock trusts them
    /// (`AuthConfig::trust_identity_headers`); a real Contrail behind keystone does not.
    #[default]
    IdentityHeaders,
    /// A keystone token per subject, keyed by the subject as [`Subject`] displays it (e.g.
    /// `user alice groups dev`), for a real Contrail. The token's own roles and project apply.
    Tokens(BTreeMap<String, String>),
}

/// What an RBAC check needs besides the two clients.
///
/// # Usage
/// ```
/// use harness_runner::checks::rbac::RbacContext;
/// let ctx = RbacContext::new("k8s");
/// assert_eq!(ctx.cluster_name, "k8s");
/// ```
#[derive(Clone, Debug)]
pub struct RbacContext {
    /// The Kubernetes → Contrail mapping (the scenario's `rbacMapping` file, else v1). Give the
    /// kube-manager the same document, or consistency is checked against another mapping.
    pub mapping: ContrailMapping,
    /// Cluster name: namespace `ns` is Contrail project `default-domain:<cluster>-<ns>`.
    pub cluster_name: String,
    /// How to call Contrail as the subject.
    pub identity: ContrailIdentity,
    /// How long a cell may take to reach its expected answer: Kubernetes' RBAC caches and the
    /// kube-manager's api-access-lists follow the RBAC objects eventually, so a wrong answer is
    /// asked again until this has passed (counted from the start of the check). Default 5 s.
    pub within: Duration,
}

impl RbacContext {
    /// Mapping v1 and identity headers, for cluster `cluster_name`.
    pub fn new(cluster_name: &str) -> Self {
        RbacContext {
            mapping: ContrailMapping::default(),
            cluster_name: cluster_name.to_string(),
            identity: ContrailIdentity::IdentityHeaders,
            within: DEFAULT_WITHIN,
        }
    }

    /// The same context with another mapping.
    pub fn with_mapping(mut self, mapping: ContrailMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// The same context with another convergence budget.
    pub fn with_within(mut self, within: Duration) -> Self {
        self.within = within;
        self
    }

    /// The same context calling Contrail with another identity.
    pub fn with_identity(mut self, identity: ContrailIdentity) -> Self {
        self.identity = identity;
        self
    }
}

/// Checks one subject's Kubernetes decisions and, with `contrail: consistent`, that the
/// Contrail API decides the mapped operations the same way.
///
/// Cells come per request, in the order `allowed` then `denied`: the kubernetes cell, then
/// (with `contrail: consistent`) the contrail cell. `vnc` is the harness's own (admin) client:
/// it resolves project uuids, reads api-access-lists for the explanations and removes a probe
/// object should a server create one; the subject's calls go through a client of their own.
pub async fn run(
    kube: &kube::Client,
    vnc: &VncClient,
    check: &RbacCheck,
    ctx: &RbacContext,
) -> Vec<CellResult> {
    let subject = &check.subject;
    let (oracle, oracle_error) = match cluster_rbac(kube, ctx).await {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    let requests: Vec<(&RbacRequest, bool)> = check
        .allowed
        .iter()
        .map(|r| (r, true))
        .chain(check.denied.iter().map(|r| (r, false)))
        .collect();
    // The mapping needs no bindings: without the cluster's RBAC objects it still maps.
    let mut contrail = match check.contrail {
        ContrailRbac::Consistent => {
            let mapper = match &oracle {
                Some(r) => Ok(r.clone()),
                None => mapping_only(ctx),
            };
            Some((ContrailSide::new(vnc, ctx, subject).await, mapper))
        }
        ContrailRbac::Ignore => None,
    };
    let start = Instant::now();
    let deadline = start + ctx.within;
    let mut cells = Vec::new();
    for (request, expected) in requests {
        let mut attempts = 0;
        let review = loop {
            attempts += 1;
            let answer = review(kube, subject, request).await;
            let settled = matches!(&answer, Ok(r) if r.allowed == expected);
            if settled || Instant::now() >= deadline {
                break answer;
            }
            pause(deadline).await;
        };
        let mut cell = kubernetes_cell(
            subject,
            request,
            expected,
            &review,
            oracle.as_ref(),
            oracle_error.as_deref(),
        );
        cell.attempts = attempts;
        if cell.outcome == Outcome::Passed {
            cell.converged_after_ms = Some(millis(start.elapsed()));
        }
        cells.push(cell);
        if let Some((side, mapper)) = contrail.as_mut() {
            let mapping = match mapper {
                Ok(r) => &*r,
                Err(e) => {
                    let mut cell = blank(subject, request, "contrail");
                    cell.outcome = Outcome::Inconclusive {
                        reason: format!("cannot apply the RBAC mapping: {e}"),
                    };
                    cells.push(cell);
                    continue;
                }
            };
            let mut attempts = 0;
            let mut cell = loop {
                attempts += 1;
                let cell = side.cell(mapping, request, &review).await;
                let settled = matches!(cell.outcome, Outcome::Passed | Outcome::Skipped { .. })
                    || review.is_err();
                if settled || Instant::now() >= deadline {
                    break cell;
                }
                pause(deadline).await;
            };
            cell.attempts = attempts;
            if cell.outcome == Outcome::Passed {
                cell.converged_after_ms = Some(millis(start.elapsed()));
            }
            cells.push(cell);
        }
    }
    cells
}

/// Waits before asking again, never past the deadline.
async fn pause(deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(POLL_INTERVAL.min(left)).await;
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn verdict(allowed: bool) -> &'static str {
    if allowed { "allow" } else { "deny" }
}

/// The subject as cells show it.
fn who(subject: &Subject) -> String {
    let s = subject.to_string();
    if s.is_empty() { "anonymous".into() } else { s }
}

fn blank(subject: &Subject, request: &RbacRequest, port: &str) -> CellResult {
    CellResult {
        from: who(subject),
        to: request.to_string(),
        port: port.into(),
        expected: String::new(),
        observed: String::new(),
        outcome: Outcome::Inconclusive {
            reason: "not observed".into(),
        },
        explanation: String::new(),
        observed_detail: None,
        converged_after_ms: None,
        attempts: 1,
        loopback: false,
        evidence: Vec::new(),
        rerun: None,
        deviations: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes

/// The user and groups a request by `subject` carries, as the API server's authenticator
/// would set them: a service account `ns/name` is user `system:serviceaccount:ns:name` in
/// `system:serviceaccounts` and `system:serviceaccounts:ns`; every authenticated subject is in
/// `system:authenticated`.
fn user_info(subject: &Subject) -> (String, Vec<String>) {
    let mut groups = subject.groups.clone();
    let sa_user = subject.service_account.as_ref().map(|sa| {
        let (ns, name) = sa.split_once('/').unwrap_or(("default", sa.as_str()));
        groups.push("system:serviceaccounts".into());
        groups.push(format!("system:serviceaccounts:{ns}"));
        format!("system:serviceaccount:{ns}:{name}")
    });
    let user = subject.user.clone().or(sa_user).unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return (
            "system:anonymous".into(),
            vec!["system:unauthenticated".into()],
        );
    }
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    (user, groups)
}

/// What the API server answered to a SubjectAccessReview.
struct Review {
    allowed: bool,
    /// `status.reason`, `status.evaluationError`, or empty.
    reason: String,
}

async fn review(
    kube: &kube::Client,
    subject: &Subject,
    request: &RbacRequest,
) -> Result<Review, String> {
    let (user, groups) = user_info(subject);
    let mut spec = SubjectAccessReviewSpec {
        user: (!user.is_empty()).then_some(user),
        groups: Some(groups),
        ..SubjectAccessReviewSpec::default()
    };
    if let Some(path) = &request.path {
        spec.non_resource_attributes = Some(NonResourceAttributes {
            path: Some(path.clone()),
            verb: Some(request.verb.clone()),
        });
    } else {
        let resource = request.resource.clone().unwrap_or_default();
        let group = request
            .group
            .clone()
            .unwrap_or_else(|| harness_oracle::rbac::default_api_group(&resource).to_string());
        spec.resource_attributes = Some(ResourceAttributes {
            verb: Some(request.verb.clone()),
            group: Some(group),
            resource: Some(resource.clone()),
            subresource: request.subresource.clone(),
            name: request.name.clone(),
            // The API server files `/api/v1/namespaces/NAME` under namespace NAME (and so does
            // the oracle): a RoleBinding in NAME can grant it.
            namespace: match (&request.namespace, resource.as_str(), &request.name) {
                (None, "namespaces", Some(name)) => Some(name.clone()),
                (ns, _, _) => ns.clone(),
            },
            ..ResourceAttributes::default()
        });
    }
    let sar = SubjectAccessReview {
        spec,
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(kube.clone());
    let answer = api
        .create(&PostParams::default(), &sar)
        .await
        .map_err(|e| format!("the Kubernetes API could not answer a SubjectAccessReview: {e}"))?;
    let status = answer.status.ok_or_else(|| {
        "the Kubernetes API answered the SubjectAccessReview without a status".to_string()
    })?;
    let reason = [status.reason, status.evaluation_error]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Review {
        allowed: status.allowed,
        reason,
    })
}

fn kubernetes_cell(
    subject: &Subject,
    request: &RbacRequest,
    expected: bool,
    review: &Result<Review, String>,
    oracle: Option<&Rbac>,
    oracle_error: Option<&str>,
) -> CellResult {
    let mut cell = blank(subject, request, "kubernetes");
    cell.expected = verdict(expected).into();
    let oracle_says = match (oracle, oracle_error) {
        (Some(rbac), _) => {
            let d = rbac.decide(subject, request);
            let disagree = if d.allowed == expected {
                ""
            } else {
                " (the oracle disagrees with the scenario)"
            };
            format!("oracle: {d}{disagree}")
        }
        (None, Some(e)) => format!("oracle unavailable: {e}"),
        (None, None) => "oracle unavailable".into(),
    };
    cell.explanation = format!(
        "the scenario expects Kubernetes to {} `{request}`; {oracle_says}",
        verdict(expected)
    );
    match review {
        Ok(r) => {
            cell.observed = verdict(r.allowed).into();
            cell.outcome = if r.allowed == expected {
                Outcome::Passed
            } else {
                Outcome::Failed
            };
            let reason = if r.reason.is_empty() {
                "the API server gave no reason".to_string()
            } else {
                r.reason.clone()
            };
            cell.observed_detail = Some(format!(
                "SubjectAccessReview {}: {reason}",
                if r.allowed { "allowed" } else { "denied" }
            ));
        }
        Err(e) => {
            cell.outcome = Outcome::Inconclusive { reason: e.clone() };
        }
    }
    cell
}

/// The oracle's RBAC over the cluster's Roles, ClusterRoles and bindings (plus the bootstrap
/// roles), with the context's mapping.
async fn cluster_rbac(kube: &kube::Client, ctx: &RbacContext) -> Result<Rbac, String> {
    let mut objects: Vec<Value> = Vec::new();
    collect(
        &mut objects,
        Api::<ClusterRole>::all(kube.clone())
            .list(&Default::default())
            .await,
        "ClusterRoles",
    )?;
    collect(
        &mut objects,
        Api::<ClusterRoleBinding>::all(kube.clone())
            .list(&Default::default())
            .await,
        "ClusterRoleBindings",
    )?;
    collect(
        &mut objects,
        Api::<Role>::all(kube.clone())
            .list(&Default::default())
            .await,
        "Roles",
    )?;
    collect(
        &mut objects,
        Api::<RoleBinding>::all(kube.clone())
            .list(&Default::default())
            .await,
        "RoleBindings",
    )?;
    rbac_of(&objects, ctx)
}

fn collect<K: serde::Serialize + Clone>(
    out: &mut Vec<Value>,
    listed: Result<ObjectList<K>, kube::Error>,
    what: &str,
) -> Result<(), String> {
    let list = listed.map_err(|e| format!("cannot list {what}: {e}"))?;
    for item in list.items {
        out.push(
            serde_json::to_value(&item)
                .map_err(|e| format!("cannot read one of the {what}: {e}"))?,
        );
    }
    Ok(())
}

fn rbac_of(objects: &[Value], ctx: &RbacContext) -> Result<Rbac, String> {
    let settings = ContrailSettings {
        cluster_name: ctx.cluster_name.clone(),
        ..ContrailSettings::default()
    };
    let mut cluster = Cluster::from_objects(objects, &ClusterSpec::default(), &settings)
        .map_err(|e| format!("the oracle cannot read the cluster's RBAC objects: {e}"))?;
    cluster.set_rbac_mapping(ctx.mapping.clone());
    Ok(cluster.rbac().clone())
}

/// An [`Rbac`] that knows the mapping but no bindings: enough to map requests onto Contrail
/// objects when the cluster's RBAC objects could not be read.
fn mapping_only(ctx: &RbacContext) -> Result<Rbac, String> {
    rbac_of(&[], ctx)
}

// ---------------------------------------------------------------------------------------
// Contrail

/// A project the subject's calls are scoped to.
#[derive(Clone)]
struct Project {
    fq_name: Vec<String>,
    /// `None`: the project does not exist (only the domain's and global rules apply).
    uuid: Option<String>,
}

/// State shared by the contrail cells of one check.
struct ContrailSide<'a> {
    admin: &'a VncClient,
    ctx: &'a RbacContext,
    subject: &'a Subject,
    /// The Contrail roles sent as `X-Role` (identity headers only).
    roles: Option<Vec<String>>,
    /// The server's `aaa_mode`, when it tells.
    aaa_mode: Option<String>,
    /// api-access-lists, read once for explanations (or why they could not be read).
    lists: Result<Vec<VncObject>, String>,
    projects: BTreeMap<String, Result<Project, String>>,
}

/// The answer to one probe.
struct Probe {
    access: ContrailAccess,
    /// The call made, e.g. `POST /virtual-machines`.
    call: String,
    /// `Ok(allowed)`, or why there is no answer.
    decision: Result<bool, String>,
    /// What the server said, and anything the probe did that a person should know.
    note: String,
    /// The project the call was scoped to.
    scope: String,
    /// The server's message with a 403.
    refusal: Option<String>,
}

impl<'a> ContrailSide<'a> {
    async fn new(admin: &'a VncClient, ctx: &'a RbacContext, subject: &'a Subject) -> Self {
        let roles = match ctx.identity {
            ContrailIdentity::IdentityHeaders => {
                Some(harness_contrail_mock::kube_manager::subject_roles(
                    subject.user.as_deref(),
                    &subject.groups,
                    subject.service_account.as_deref(),
                ))
            }
            ContrailIdentity::Tokens(_) => None,
        };
        let aaa_mode = match admin.raw(Method::GET, "/aaa-mode", None).await {
            Ok((200, body)) => serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                v.get("aaa-mode")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }),
            _ => None,
        };
        let lists = admin
            .list(
                "api-access-list",
                &harness_contrail_vnc::ListParams {
                    detail: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("api-access-lists could not be read: {e}"));
        ContrailSide {
            admin,
            ctx,
            subject,
            roles,
            aaa_mode,
            lists,
            projects: BTreeMap::new(),
        }
    }

    async fn project(&mut self, name: &str) -> Result<Project, String> {
        if let Some(p) = self.projects.get(name) {
            return p.clone();
        }
        let fq_name = vec![DOMAIN.to_string(), name.to_string()];
        let found = match self.admin.fqname_to_id("project", &fq_name).await {
            Ok(uuid) => Ok(Project {
                fq_name,
                uuid: Some(uuid),
            }),
            Err(e) if e.is_not_found() => Ok(Project {
                fq_name,
                uuid: None,
            }),
            Err(e) => Err(format!(
                "the VNC API could not resolve project {}: {e}",
                fq_name.join(":")
            )),
        };
        self.projects.insert(name.to_string(), found.clone());
        found
    }

    /// A client that acts as the subject, scoped to `project`.
    fn client(&self, project: Option<&Project>) -> Result<VncClient, String> {
        let base = self.admin.base_url();
        let cfg =
            |e: harness_contrail_vnc::VncError| format!("cannot call Contrail as the subject: {e}");
        match &self.ctx.identity {
            ContrailIdentity::IdentityHeaders => {
                let (user, _) = user_info(self.subject);
                let roles = self.roles.clone().unwrap_or_default();
                let mut c = VncClient::new(base, Auth::None)
                    .map_err(cfg)?
                    .with_header("X-User", &user)
                    .map_err(cfg)?
                    .with_header("X-Role", &roles.join(","))
                    .map_err(cfg)?;
                if let Some(uuid) = project.and_then(|p| p.uuid.as_deref()) {
                    c = c.with_header("X-Project-Id", uuid).map_err(cfg)?;
                }
                Ok(c)
            }
            ContrailIdentity::Tokens(tokens) => {
                let key = who(self.subject);
                let token = tokens.get(&key).ok_or_else(|| {
                    format!("no keystone token for subject `{key}` in the RBAC context: Contrail cannot be asked as this subject")
                })?;
                VncClient::new(base, Auth::KeystoneToken(token.clone())).map_err(cfg)
            }
        }
    }

    async fn cell(
        &mut self,
        rbac: &Rbac,
        request: &RbacRequest,
        review: &Result<Review, String>,
    ) -> CellResult {
        let mut cell = blank(self.subject, request, "contrail");
        let accesses = rbac.contrail_expectation(self.subject, request);
        if accesses.is_empty() {
            cell.outcome = Outcome::Skipped {
                reason: self.unmapped(request),
            };
            return cell;
        }
        let k8s = match review {
            Ok(r) => r.allowed,
            Err(e) => {
                cell.outcome = Outcome::Inconclusive {
                    reason: format!("no Kubernetes decision to compare with: {e}"),
                };
                return cell;
            }
        };
        cell.expected = verdict(k8s).into();
        let mut probes = Vec::new();
        for access in accesses {
            probes.push(self.probe(access).await);
        }
        let types: Vec<String> = dedup(probes.iter().map(|p| p.access.object_type.clone()));
        let letters: Vec<String> = dedup(probes.iter().map(|p| p.access.op.to_string()));
        let scopes: Vec<String> = dedup(probes.iter().map(|p| p.scope.clone()));
        let roles = match &self.roles {
            Some(r) => format!("roles [{}]", r.join(", ")),
            None => "the subject's keystone token".into(),
        };
        cell.explanation = format!(
            "Kubernetes {} `{request}` (SubjectAccessReview); mapping {} backs it with {} and {}; the VNC API, asked as {roles} in {}, must decide the same",
            if k8s { "allows" } else { "denies" },
            self.ctx.mapping.version,
            types.join(", "),
            letters.join(""),
            scopes.join(", ")
        );
        let allowed: Vec<&Probe> = probes.iter().filter(|p| p.decision == Ok(true)).collect();
        let denied: Vec<&Probe> = probes.iter().filter(|p| p.decision == Ok(false)).collect();
        let unanswered: Vec<&Probe> = probes.iter().filter(|p| p.decision.is_err()).collect();
        cell.observed = match (allowed.is_empty(), denied.is_empty()) {
            (false, true) => "allow".into(),
            (true, false) => "deny".into(),
            (false, false) => format!("mixed: allow {}; deny {}", short(&allowed), short(&denied)),
            (true, true) => String::new(),
        };
        let mismatched: Vec<&Probe> = probes
            .iter()
            .filter(|p| matches!(p.decision, Ok(a) if a != k8s))
            .collect();
        let mut detail: Vec<String> = Vec::new();
        if !mismatched.is_empty() {
            for p in &mismatched {
                detail.push(format!(
                    "Contrail {} {} on {} in {} where Kubernetes {} `{request}` ({} → {}); {}",
                    if k8s { "denied" } else { "allowed" },
                    p.access.op,
                    p.access.object_type,
                    p.scope,
                    if k8s { "allows" } else { "denies" },
                    p.call,
                    p.note,
                    self.rules_involved(p)
                ));
            }
            if let Some(mode) = self.aaa_mode.as_deref().filter(|m| *m != "rbac") {
                detail.push(format!(
                    "the VNC API runs with aaa_mode {mode}: api-access-lists are not enforced"
                ));
            }
            cell.outcome = Outcome::Failed;
        } else if !unanswered.is_empty() {
            let causes: Vec<String> = unanswered
                .iter()
                .map(|p| {
                    format!(
                        "{} {}: {}",
                        p.access.op,
                        p.access.object_type,
                        p.decision.as_ref().err().cloned().unwrap_or_default()
                    )
                })
                .collect();
            cell.outcome = Outcome::Inconclusive {
                reason: causes.join("; "),
            };
        } else {
            cell.outcome = Outcome::Passed;
        }
        for p in probes
            .iter()
            .filter(|p| matches!(p.decision, Ok(a) if a == k8s))
        {
            detail.push(format!(
                "{} {}: {} ({} → {})",
                p.access.op,
                p.access.object_type,
                if k8s { "allowed" } else { "denied" },
                p.call,
                p.note
            ));
        }
        // One refusal message is enough: the others differ only in the object type.
        if let Some(said) = probes.iter().find_map(|p| p.refusal.as_deref()) {
            detail.push(format!("the VNC API refused with: {said}"));
        }
        cell.observed_detail = (!detail.is_empty()).then(|| detail.join("; "));
        cell
    }

    /// Why a request maps onto no Contrail operation.
    fn unmapped(&self, request: &RbacRequest) -> String {
        let m = &self.ctx.mapping;
        let Some(resource) = &request.resource else {
            return format!("`{request}` is a non-resource request: no Contrail object backs it");
        };
        let key = match &request.subresource {
            Some(s) => format!("{resource}/{s}"),
            None => resource.clone(),
        };
        if !m.resources.contains_key(&key) {
            return format!(
                "mapping {} backs no Contrail object with `{key}` (it maps {})",
                m.version,
                m.resources.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        format!(
            "mapping {} gives verb `{}` no CRUD letter (it maps {})",
            m.version,
            request.verb,
            m.verbs.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    }

    async fn probe(&mut self, access: ContrailAccess) -> Probe {
        let mut probe = Probe {
            call: String::new(),
            decision: Err(String::new()),
            note: String::new(),
            scope: DOMAIN.to_string(),
            refusal: None,
            access,
        };
        let Some(info) = schema::resource(&probe.access.object_type) else {
            probe.decision = Err(format!(
                "the mapping names `{}`, which is not a VNC type",
                probe.access.object_type
            ));
            return probe;
        };
        let project = match probe.access.project.clone() {
            None => None,
            Some(name) => match self.project(&name).await {
                Ok(p) => Some(p),
                Err(e) => {
                    probe.decision = Err(e);
                    return probe;
                }
            },
        };
        if let Some(p) = &project {
            probe.scope = match p.uuid {
                Some(_) => format!("project {}", p.fq_name.join(":")),
                None => format!("{DOMAIN} (project {} does not exist)", p.fq_name.join(":")),
            };
        }
        let client = match self.client(project.as_ref()) {
            Ok(c) => c,
            Err(e) => {
                probe.decision = Err(e);
                return probe;
            }
        };
        let (method, path, body) = probe_call(info, probe.access.op, project.as_ref());
        probe.call = format!("{method} {}", path.split('?').next().unwrap_or(&path));
        let answer = client
            .raw(
                method,
                &path,
                body.map(|b| bytes::Bytes::from(b.to_string())),
            )
            .await;
        let (status, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                probe.decision = Err(format!("the VNC API could not answer: {e}"));
                return probe;
            }
        };
        let text = first_line(&String::from_utf8_lossy(&body));
        match status {
            200..=299 => {
                probe.decision = Ok(true);
                probe.note = format!("{status}");
                if probe.access.op == Crud::Create {
                    probe.note = self.remove_created(info, &body).await;
                }
            }
            400 | 404 | 409 => {
                probe.decision = Ok(true);
                probe.note = format!("{status} after RBAC let it through, nothing changed: {text}");
            }
            403 => {
                probe.decision = Ok(false);
                probe.note = "403".into();
                probe.refusal = Some(text);
            }
            401 => {
                probe.decision = Err(format!(
                    "the VNC API did not accept the subject's identity ({} → 401 {text})",
                    probe.call
                ));
            }
            other => {
                probe.decision = Err(format!(
                    "the VNC API failed ({} → {other} {text})",
                    probe.call
                ));
            }
        }
        probe
    }

    /// Deletes a probe object a server created although the body was invalid.
    async fn remove_created(&self, info: &TypeInfo, body: &[u8]) -> String {
        let uuid = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.get(info.name())
                .and_then(|o| o.get("uuid"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        match uuid {
            None => "2xx: the server accepted the invalid probe body".into(),
            Some(uuid) => match self.admin.delete(info.name(), &uuid).await {
                Ok(()) => format!(
                    "2xx: the server created the probe {} {uuid} from an invalid body; the harness deleted it again",
                    info.name()
                ),
                Err(e) => format!(
                    "2xx: the server created the probe {} {uuid} from an invalid body and deleting it failed ({e}): delete it by hand",
                    info.name()
                ),
            },
        }
    }

    /// The api-access-list rules that bear on a probe's answer.
    fn rules_involved(&self, p: &Probe) -> String {
        let lists = match &self.lists {
            Ok(l) => l,
            Err(e) => return e.clone(),
        };
        let project_fq: Option<Vec<String>> = p
            .access
            .project
            .as_ref()
            .map(|name| vec![DOMAIN.to_string(), name.clone()]);
        let applies = |l: &VncObject| {
            let parent = &l.fq_name[..l.fq_name.len().saturating_sub(1)];
            parent == ["default-global-system-config"]
                || parent == [DOMAIN]
                || project_fq.as_deref() == Some(parent)
        };
        let letter = p.access.op.letter();
        let mut granting = Vec::new();
        let mut other = Vec::new();
        for list in lists.iter().filter(|l| applies(l)) {
            let rules = list
                .fields
                .get("api_access_list_entries")
                .and_then(|e| e.get("rbac_rule"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for rule in rules {
                let object = rule
                    .get("rule_object")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if object != p.access.object_type && object != "*" {
                    continue;
                }
                let field = rule
                    .get("rule_field")
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty() && *f != "*")
                    .map(|f| format!(".{f}"))
                    .unwrap_or_default();
                for perm in rule
                    .get("rule_perms")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let role = perm.get("role_name").and_then(Value::as_str).unwrap_or("");
                    let crud = perm.get("role_crud").and_then(Value::as_str).unwrap_or("");
                    let ours = role == "*"
                        || self
                            .roles
                            .as_ref()
                            .is_none_or(|roles| roles.iter().any(|r| r == role));
                    if !ours {
                        continue;
                    }
                    let text = format!(
                        "api-access-list {}: {object}{field} {role}:{crud}",
                        list.fq_name.join(":")
                    );
                    if crud.contains(letter) {
                        granting.push(text);
                    } else {
                        other.push(text);
                    }
                }
            }
        }
        if !granting.is_empty() {
            return format!("granted by {}", granting.join(", "));
        }
        let roles = match &self.roles {
            Some(r) => format!("roles [{}]", r.join(", ")),
            None => "the token's roles".into(),
        };
        let mut s = format!(
            "no api-access-list rule grants {roles} {letter} on {}",
            p.access.object_type
        );
        if !other.is_empty() {
            s.push_str(&format!(" (rules for them: {})", other.join(", ")));
        }
        s
    }
}

/// The call that exercises `op` on `info` without changing anything (see the module docs).
fn probe_call(
    info: &TypeInfo,
    op: Crud,
    project: Option<&Project>,
) -> (Method, String, Option<Value>) {
    let in_project = project
        .and_then(|p| p.uuid.as_deref())
        .filter(|_| info.schema.parents.contains(&"project"));
    let invalid = json!({ PROBE_FIELD: true });
    match op {
        Crud::Read => {
            let mut path = format!("/{}?count=True", info.plural);
            if let Some(uuid) = in_project {
                path.push_str(&format!("&parent_id={uuid}"));
            }
            (Method::GET, path, None)
        }
        Crud::Create => {
            let mut inner = invalid;
            let name = format!("{PROBE_FIELD}-{}", std::process::id());
            if let (Some(p), true) = (project, info.schema.parents.contains(&"project")) {
                let mut fq = p.fq_name.clone();
                fq.push(name);
                inner["fq_name"] = json!(fq);
                inner["parent_type"] = json!("project");
            } else {
                inner["fq_name"] = json!([name]);
            }
            (
                Method::POST,
                format!("/{}", info.plural),
                Some(json!({ info.name(): inner })),
            )
        }
        Crud::Update => (
            Method::PUT,
            format!("/{}/{PROBE_UUID}", info.name()),
            Some(json!({ info.name(): invalid })),
        ),
        Crud::Delete => (
            Method::DELETE,
            format!("/{}/{PROBE_UUID}", info.name()),
            None,
        ),
    }
}

fn short(probes: &[&Probe]) -> String {
    probes
        .iter()
        .map(|p| format!("{} {}", p.access.op, p.access.object_type))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn first_line(s: &str) -> String {
    let line = s.trim().lines().next().unwrap_or("").trim();
    let cut: String = line.chars().take(200).collect();
    if cut.len() < line.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
