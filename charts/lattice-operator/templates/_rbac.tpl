{{/*
The operator's RBAC rules, one template per scope. Every rule carries a comment saying which of
the operator's API calls needs it; tests/chart_security.rs checks the rules are exactly these and
that each is commented, in both watch modes. Change a rule only together with the code that needs
it, and say why here.
*/}}

{{/* Rules in every namespace the operator watches: a ClusterRole when it watches the whole
cluster, a Role per namespace otherwise. */}}
{{- define "lattice-operator.watchedRules" -}}
# LatticeAgents: the controller lists and watches them (its cache and work queue), reads one
# directly when it does not parse as a LatticeAgent, and patches them to add and remove its
# finalizer.
- apiGroups: ["agentlattice.io"]
  resources: ["latticeagents"]
  verbs: ["get", "list", "watch", "patch"]
{{- if and .Values.workloads.enabled .Values.workloads.identities }}
# Identities of annotated workloads: the operator creates a workload's LatticeAgent (a server-side
# apply, which is a patch, creates it) and deletes it when the annotation goes.
- apiGroups: ["agentlattice.io"]
  resources: ["latticeagents"]
  verbs: ["create", "delete"]
{{- end }}
# LatticeProvisioners (docs/tenancy.md): the operator watches them (a cache, like the
# LatticeAgents') to resolve spec.provisionerRef, and writes their status after checking their
# service key (Ready, lastChecked, agents, the key's public prefix).
- apiGroups: ["agentlattice.io"]
  resources: ["latticeprovisioners"]
  verbs: ["list", "watch"]
# LatticeProvisioner status: a merge patch after each check of its service key.
- apiGroups: ["agentlattice.io"]
  resources: ["latticeprovisioners/status"]
  verbs: ["patch"]
# LatticeAgent status: replaced (PUT with the resourceVersion as precondition) when a reconcile
# changes it, and patched with an InvalidSpec condition on an object that does not parse.
- apiGroups: ["agentlattice.io"]
  resources: ["latticeagents/status"]
  verbs: ["update", "patch"]
# The operator's Secrets name their LatticeAgent as controller owner with
# blockOwnerDeletion: true, so that they are garbage-collected with it. The API server's
# OwnerReferencesPermissionEnforcement admission allows setting that only to a client that may
# update the owner's finalizers. Nothing else uses this rule.
- apiGroups: ["agentlattice.io"]
  resources: ["latticeagents/finalizers"]
  verbs: ["update"]
# Secrets: a provisioner's service key is read (get) where its LatticeProvisioner points, and
# only if the Secret carries the label agentlattice.io/service-key: "true"; the operator watches
# the Secrets with that label (list/watch) to use a replaced key at once. RBAC cannot scope get
# to names chosen at run time by a provisioner, so the label is the operator's own check
# (docs/tenancy.md), on top of this rule.
# Secrets: the operator creates each workload's key Secret, patches it (rotation, its record,
# releasing it on deletionPolicy Retain), and reads one by name when a LatticeAgent adopts an
# existing Secret that is not labelled as the operator's yet. It lists and watches only Secrets
# labelled app.kubernetes.io/managed-by=lattice-operator and caches them with digests in place of
# keys, but RBAC cannot limit list/watch to a label, nor create/patch to names that users choose:
# this rule lets the operator read every Secret where it applies. To confine it, set
# watchNamespaces. No delete: a Secret goes with its LatticeAgent through its ownerReference.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- if .Values.workloads.enabled }}
# Workloads: the operator lists and watches them to find the ones that read each agent's key
# (their pod templates) and where their rollouts stand, keeping a trimmed view of each; and the
# annotations of the ones that ask for an identity.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "watch"]
{{- if .Values.workloads.restarts }}
# Restart on rotation: a patch of a workload's pod template annotations
# (agentlattice.io/restarted-for, -at) starts its rolling restart once a new key is written.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["patch"]
{{- end }}
{{- end }}
# Events (events.k8s.io/v1) about LatticeAgents: Registered, KeyRotated, ReconcileError, ...
# The operator's event publisher (src/events.rs) creates an event, and patches its series
# when the same event repeats.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Cluster-scoped: needed in both watch modes. */}}
{{- define "lattice-operator.clusterRules" -}}
# At start-up the operator reads its own CRD (this one object, by name) to check that it is
# installed and serves v1alpha1, and says how to install it when not.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["latticeagents.agentlattice.io"]
  verbs: ["get"]
# ClusterLatticeProvisioners (cluster-scoped): watched to resolve spec.provisionerRef; their
# status is written after each check of their service key.
- apiGroups: ["agentlattice.io"]
  resources: ["clusterlatticeprovisioners"]
  verbs: ["list", "watch"]
# ClusterLatticeProvisioner status: a merge patch after each check of its service key.
- apiGroups: ["agentlattice.io"]
  resources: ["clusterlatticeprovisioners/status"]
  verbs: ["patch"]
# Namespaces: read (get, by the LatticeAgent's namespace) only when a ClusterLatticeProvisioner
# selects namespaces by label, to match its selector.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}

{{/* In the release namespace. */}}
{{- define "lattice-operator.ownNamespaceRules" -}}
# The provisioner service key: this one Secret, by name. The operator reads it (get) and
# watches it (list and watch with fieldSelector metadata.name=<name>, which resourceNames
# authorises) to pick up a rotated key at once.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ .Values.serviceKey.secretName | quote }}]
  verbs: ["get", "list", "watch"]
{{- if .Values.leaderElection.enabled }}
# Leader election: the operator creates its Lease when it does not exist yet (create cannot be
# limited to a name)...
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
# ...and reads, renews and takes over only that Lease.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "lattice-operator.leaseName" . | quote }}]
  verbs: ["get", "update"]
{{- end }}
{{- end }}
