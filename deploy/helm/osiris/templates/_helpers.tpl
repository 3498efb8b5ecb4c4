{{- define "osiris.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "osiris.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "osiris.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "osiris.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "osiris.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "osiris.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "osiris.selector" -}}
app.kubernetes.io/name: {{ include "osiris.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "osiris.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "osiris.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "osiris.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "osiris.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "osiris.fullname" .)) .Values.credentials.existingSecret -}}
{{- end -}}

{{/* DATABASE_URL from the existing Secret; then the named credentials, each optional except
     OSIRIS_SECRET_KEY (Settings refuses to start without it when DATABASE_URL is set). */}}
{{- define "osiris.credentialEnv" -}}
{{- $root := index . 0 -}}
{{- $names := index . 1 -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.database.existingSecret }}
      key: {{ $root.Values.database.key }}
{{- range $name := $names }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "osiris.credentialsSecret" $root }}
      key: {{ $name }}
      {{- if ne $name "OSIRIS_SECRET_KEY" }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* The checks pods' environment: DATABASE_URL from the checks role's Secret (else the shared
     one), a placeholder signing key (they sign nothing; Settings requires one with DATABASE_URL),
     then the named credentials, each optional. */}}
{{- define "osiris.checksEnv" -}}
{{- $db := .Values.checks.database -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default .Values.database.existingSecret $db.existingSecret }}
      key: {{ ternary $db.key .Values.database.key (ne $db.existingSecret "") }}
- name: OSIRIS_SECRET_KEY
  value: "unused: the checks pods sign nothing"
{{- range $name := .Values.checks.credentials }}
{{- if eq $name "OSIRIS_SECRET_KEY" }}
{{- fail "checks.credentials: the checks pods never get OSIRIS_SECRET_KEY (they sign nothing)" }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "osiris.credentialsSecret" $ }}
      key: {{ $name }}
      optional: true
{{- end }}
{{- end -}}

{{/* The migration Job's command: with a checks role named, migrate and then grant it. */}}
{{- define "osiris.migrateArgs" -}}
{{- $role := .Values.checks.database.role -}}
{{- if and .Values.checks.enabled $role -}}
{{- if not (regexMatch "^[a-z_][a-z0-9_]{0,62}$" $role) -}}
{{- fail "checks.database.role: a plain PostgreSQL role name (lower-case letters, digits, _)" -}}
{{- end -}}
["db", "grant-checks-role", {{ $role | quote }}]
{{- else -}}
["migrate"]
{{- end -}}
{{- end -}}

{{- define "osiris.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "osiris.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: data
{{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-data" (include "osiris.fullname" .)) .Values.persistence.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.dataSizeLimit }}
{{- end }}
{{- end -}}

{{- define "osiris.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ .Values.dataDir }}
{{- end -}}

{{- define "osiris.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/credentials: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end -}}
