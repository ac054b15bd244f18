{{/* The chart name. */}}
{{- define "lattice-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of namespaced objects: the release name, plus the chart name unless the
release name already contains it. */}}
{{- define "lattice-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of cluster-scoped objects: prefixed with the release namespace, so that two
releases (say, one per team, each watching its own namespaces with its own service key) never
collide. */}}
{{- define "lattice-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "lattice-operator.fullname" .) }}
{{- end }}

{{- define "lattice-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the pods that Deployment, Service, PodDisruptionBudget and NetworkPolicy select:
never change them (a Deployment's selector is immutable). */}}
{{- define "lattice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lattice-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object: the standard ones, then commonLabels. Note
`app.kubernetes.io/managed-by: Helm`, never `lattice-operator`: the operator watches Secrets
labelled `managed-by=lattice-operator` as its own, and none of the chart's objects is. */}}
{{- define "lattice-operator.labels" -}}
{{- $labels := dict "helm.sh/chart" (include "lattice-operator.chart" .) "app.kubernetes.io/version" .Chart.AppVersion "app.kubernetes.io/component" "operator" "app.kubernetes.io/part-of" "lattice-operator" }}
{{- $labels = merge (deepCopy (default (dict) .Values.commonLabels)) $labels }}
{{- $_ := set $labels "app.kubernetes.io/name" (include "lattice-operator.name" .) }}
{{- $_ = set $labels "app.kubernetes.io/instance" .Release.Name }}
{{- $_ = set $labels "app.kubernetes.io/managed-by" .Release.Service }}
{{- toYaml $labels }}
{{- end }}

{{/* commonAnnotations as a metadata block at indent 2 (with its leading newline), or nothing. */}}
{{- define "lattice-operator.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- printf "\n%s" (printf "annotations:\n%s" (toYaml . | indent 2) | indent 2) }}
{{- end }}
{{- end }}

{{- define "lattice-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lattice-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing service account the operator runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lattice-operator.leaseName" -}}
{{- default (include "lattice-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "lattice-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Checks across values that the JSON schema cannot express with a clear message. Included
by the Deployment, so `helm install`, `helm upgrade` and `helm template` all stop on them. */}}
{{- define "lattice-operator.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) }}
{{- fail (printf "replicaCount is %d but leaderElection.enabled is false: without a Lease every replica would reconcile the same LatticeAgents at once and could revoke the keys another one just minted. Set leaderElection.enabled=true or replicaCount=1." (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.serviceKey.create (not .Values.serviceKey.value) }}
{{- fail "serviceKey.create is true but serviceKey.value is empty: give the service key (al_svc_...), or set serviceKey.create=false and create the Secret yourself (recommended outside development)." }}
{{- end }}
{{- if and .Values.serviceKey.value (not .Values.serviceKey.create) }}
{{- fail "serviceKey.value is set but serviceKey.create is false, so the value would be ignored: remove serviceKey.value (and keep the key out of your values), or set serviceKey.create=true for development." }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other one to null)." }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget.enabled is true but neither minAvailable nor maxUnavailable is set." }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor scrapes through the metrics Service." }}
{{- end }}
{{- range $key := list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/managed-by" }}
{{- if or (hasKey (default (dict) $.Values.commonLabels) $key) (hasKey (default (dict) $.Values.podLabels) $key) }}
{{- fail (printf "commonLabels and podLabels must not set %s: the chart sets it (the pod selector, and Helm's ownership; the operator treats objects labelled managed-by=lattice-operator as its own)." $key) }}
{{- end }}
{{- end }}
{{- end }}
