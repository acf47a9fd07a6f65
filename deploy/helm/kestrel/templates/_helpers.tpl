{{/* Names and labels shared by every template. */}}

{{- define "kestrel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kestrel.fullname" -}}
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

{{- define "kestrel.agent.fullname" -}}
{{- printf "%s-agent" (include "kestrel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kestrel.collector.fullname" -}}
{{- printf "%s-collector" (include "kestrel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kestrel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kestrel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component ("agent" or "collector"): pass (list $ "agent"). */}}
{{- define "kestrel.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "kestrel.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* An image reference: pass (list $ .Values.agent.image). */}}
{{- define "kestrel.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 }}
{{- printf "%s%s:%s" $root.Values.image.registry $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}

{{/* The collector URL agents dial. */}}
{{- define "kestrel.collectorUrl" -}}
{{- if .Values.agent.collectorUrl }}
{{- .Values.agent.collectorUrl }}
{{- else }}
{{- printf "https://%s.%s.svc:%v" (include "kestrel.collector.fullname" .) .Release.Namespace .Values.collector.service.grpcPort }}
{{- end }}
{{- end }}

{{/* The agent's configuration file: the user's map with the chart's mounts filled in. */}}
{{- define "kestrel.agent.config" -}}
{{- $config := deepCopy .Values.agent.config }}
{{- $containers := default dict (get $config "containers") }}
{{- $endpoints := list }}
{{- with .Values.agent.runtimes }}
{{- if .containerd.enabled }}
{{- $endpoints = append $endpoints (dict "kind" "containerd" "socket" (printf "/host/runtime/containerd/%s" .containerd.socket)) }}
{{- end }}
{{- if .crio.enabled }}
{{- $endpoints = append $endpoints (dict "kind" "cri-o" "socket" (printf "/host/runtime/crio/%s" .crio.socket)) }}
{{- end }}
{{- if .docker.enabled }}
{{- $endpoints = append $endpoints (dict "kind" "docker" "socket" "/host/runtime/docker/docker.sock") }}
{{- end }}
{{- end }}
{{- if not (hasKey $containers "endpoints") }}
{{- $_ := set $containers "endpoints" $endpoints }}
{{- end }}
{{- $_ := set $containers "proc_root" "/host/proc" }}
{{- $_ := set $containers "cgroup_root" "/host/sys/fs/cgroup" }}
{{- $_ := set $config "containers" $containers }}
{{- $kubernetes := default dict (get $config "kubernetes") }}
{{- if not (hasKey $kubernetes "enabled") }}
{{- $_ := set $kubernetes "enabled" .Values.agent.kubernetesMetadata }}
{{- end }}
{{- $_ := set $config "kubernetes" $kubernetes }}
{{- $spool := default dict (get $config "spool") }}
{{- $_ := set $spool "dir" "/var/lib/kestrel/spool" }}
{{- $_ := set $config "spool" $spool }}
{{- include "kestrel.integers" $config }}
{{- toToml $config }}
{{- end }}

{{/*
Helm reads every number in values as a float, and toToml writes 4096 as 4096.0, which the
binaries refuse where they expect an integer. This turns whole floats back into integers, in
place, in a map and the maps and lists inside it (pass a deepCopy).
*/}}
{{- define "kestrel.integers" -}}
{{- $map := . }}
{{- range $key, $value := $map }}
{{- if kindIs "map" $value }}
{{- include "kestrel.integers" $value }}
{{- else if kindIs "slice" $value }}
{{- $items := list }}
{{- range $value }}
{{- if kindIs "map" . }}
{{- include "kestrel.integers" . }}
{{- $items = append $items . }}
{{- else if and (kindIs "float64" .) (eq . (floor .)) }}
{{- $items = append $items (int64 .) }}
{{- else }}
{{- $items = append $items . }}
{{- end }}
{{- end }}
{{- $_ := set $map $key $items }}
{{- else if and (kindIs "float64" $value) (eq $value (floor $value)) }}
{{- $_ := set $map $key (int64 $value) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The collector's configuration file (collector.toml). */}}
{{- define "kestrel.collector.config" -}}
{{- $config := deepCopy .Values.collector.config }}
{{- $e := .Values.collector.enrolment }}
{{- if $e.enabled }}
{{- $enrolment := dict "listen" (printf "0.0.0.0:%v" .Values.collector.service.enrolPort) "ca_cert" "/run/kestrel/issuing-ca/ca.pem" "ca_key" "/run/kestrel/issuing-ca/ca-key.pem" "certificate_lifetime" $e.certificateLifetime "trust_domain" .Values.trustDomain "max_attempts_per_minute" $e.maxAttemptsPerMinute }}
{{- if $e.kubernetes.enabled }}
{{- $_ := set $enrolment "kubernetes" (dict "issuer" $e.kubernetes.issuer "jwks" "/etc/kestrel/jwks/jwks.json" "audience" "kestrel" "namespace" .Release.Namespace "service_account" (include "kestrel.agent.fullname" .)) }}
{{- end }}
{{- $_ := set $config "enrolment" $enrolment }}
{{- end }}
{{- include "kestrel.integers" $config }}
{{- toToml $config }}
{{- end }}

{{/* The collector's enrolment listener the agents dial in agent.tls.mode=enrol. */}}
{{- define "kestrel.enrolUrl" -}}
{{- if .Values.agent.tls.enrol.url }}
{{- .Values.agent.tls.enrol.url }}
{{- else }}
{{- printf "https://%s.%s.svc:%v" (include "kestrel.collector.fullname" .) .Release.Namespace .Values.collector.service.enrolPort }}
{{- end }}
{{- end }}

{{/*
spiffe-helper's configuration: the SVID, key and bundle files it writes to /run/kestrel/tls.
Pass (dict "root" $ "cert" "agent.pem" "key" "agent-key.pem" "daemon" "true").
*/}}
{{- define "kestrel.spiffeHelper.conf" -}}
agent_address = "/spiffe-workload-api/{{ .root.Values.spire.socketName }}"
cert_dir = "/run/kestrel/tls"
svid_file_name = "{{ .cert }}"
svid_key_file_name = "{{ .key }}"
svid_bundle_file_name = "ca.pem"
daemon_mode = {{ .daemon }}
{{- end }}

{{/*
A spiffe-helper container (a list item). Pass (dict "root" $ "name" "spiffe-helper" "config"
"helper.conf" "uid" 65532 "configMap" "<volume with the configuration>").
*/}}
{{- define "kestrel.spiffeHelper.container" -}}
- name: {{ .name }}
  image: {{ .root.Values.spire.helperImage }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    - -config
    - /etc/spiffe-helper/{{ .config }}
  {{- with .root.Values.spire.helperResources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    runAsUser: {{ .uid }}
    runAsGroup: {{ .uid }}
    capabilities:
      drop:
        - ALL
  volumeMounts:
    - name: {{ .configMap }}
      mountPath: /etc/spiffe-helper
      readOnly: true
    - name: spiffe-workload-api
      mountPath: /spiffe-workload-api
      readOnly: true
    - name: tls
      mountPath: /run/kestrel/tls
{{- end }}

{{/* The volume of the SPIFFE Workload API socket. */}}
{{- define "kestrel.spiffeHelper.volume" -}}
- name: spiffe-workload-api
  csi:
    driver: {{ .Values.spire.csiDriver }}
    readOnly: true
{{- end }}
