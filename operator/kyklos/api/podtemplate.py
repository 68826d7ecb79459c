"""Pod template overrides: the restricted part of a Pod spec users may set on Kyklos pods.

A TrainingJob (``spec.template``) and a ModelDeployment (``spec.runtime.template``) carry one;
``kyklos.logic.podtemplate.apply_pod_template`` merges it onto the pod Kyklos builds, with
Kyklos's own env, volumes, mounts and selector labels winning. What would break Kyklos or the
node is not expressible: env names Kyklos sets and volume names it uses are rejected at
admission naming the field, and ``hostNetwork``/``hostPID``/``hostIPC``/``privileged`` may
only be false.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, model_validator

from kyklos.api.common import (
    CelRule,
    KyklosModel,
    ObjectName,
    ResourceRequirements,
    StringMap,
    Toleration,
    cel_rules,
)

#: Env names Kyklos sets on the pods it builds (besides everything starting with KYKLOS_).
RESERVED_ENV_NAMES = ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")
#: Prefix of every env name Kyklos sets.
RESERVED_ENV_PREFIX = "KYKLOS_"
#: Volume names Kyklos uses ("tmp", "pvc-<claim>", "kyklos-...").
RESERVED_VOLUME_NAMES = ("tmp",)
RESERVED_VOLUME_PREFIXES = ("pvc-", "kyklos-")

_ENV_LIST = ", ".join(f"'{n}'" for n in RESERVED_ENV_NAMES)
RESERVED_ENV_RULE = CelRule(
    rule=f"!self.name.startsWith('{RESERVED_ENV_PREFIX}') && !(self.name in [{_ENV_LIST}])",
    message=(
        f"env names starting with {RESERVED_ENV_PREFIX} and {', '.join(RESERVED_ENV_NAMES)} "
        "are set by Kyklos"
    ),
    field_path=".name",
)
_VOLUME_PREFIX_RULE = " && ".join(f"!self.name.startsWith('{p}')" for p in RESERVED_VOLUME_PREFIXES)
_VOLUME_NAME_LIST = ", ".join(f"'{n}'" for n in RESERVED_VOLUME_NAMES)
RESERVED_VOLUME_RULE = CelRule(
    rule=f"!(self.name in [{_VOLUME_NAME_LIST}]) && {_VOLUME_PREFIX_RULE}",
    message=(
        f"volume names {', '.join(RESERVED_VOLUME_NAMES)} and those starting with "
        f"{' or '.join(RESERVED_VOLUME_PREFIXES)} are used by Kyklos"
    ),
    field_path=".name",
)
ONE_VOLUME_SOURCE = CelRule(
    rule=(
        "[has(self.secret), has(self.configMap), has(self.emptyDir), "
        "has(self.persistentVolumeClaim)].filter(x, x).size() == 1"
    ),
    message="set exactly one of secret, configMap, emptyDir, persistentVolumeClaim",
)

EnvName = Annotated[
    str, StringConstraints(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", min_length=1, max_length=256)
]
VolumeName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63)
]
ShortText = Annotated[str, StringConstraints(max_length=1024)]
KeyName = Annotated[str, StringConstraints(min_length=1, max_length=253)]


def _must_be_false(value: bool) -> bool:
    if value:
        raise ValueError("must be false: Kyklos pods never get host access or privileges")
    return value


#: A boolean that may only be false (a strict bool: 0 is not false on the wire either).
FalseOnly = Annotated[
    bool, AfterValidator(_must_be_false), Field(json_schema_extra={"enum": [False]})
]


def reserved_env_name(name: str) -> bool:
    """Whether Kyklos sets an env variable of this name on the pods it builds."""
    return name.startswith(RESERVED_ENV_PREFIX) or name in RESERVED_ENV_NAMES


def reserved_volume_name(name: str) -> bool:
    """Whether Kyklos uses a volume of this name on the pods it builds."""
    return name in RESERVED_VOLUME_NAMES or name.startswith(RESERVED_VOLUME_PREFIXES)


class KeySelector(KyklosModel):
    """One key of a Secret or ConfigMap."""

    name: ObjectName = Field(description="Name of the Secret or ConfigMap.")
    key: KeyName = Field(description="The key to select.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class FieldSelector(KyklosModel):
    """A field of the pod (metadata.name, status.podIP, ...)."""

    field_path: ShortText = Field(description="Path of the field, e.g. metadata.namespace.")
    api_version: ShortText | None = Field(default=None, description="Schema version (v1).")


class ResourceFieldSelector(KyklosModel):
    """A resource limit or request of a container."""

    resource: ShortText = Field(description="e.g. limits.memory, requests.cpu.")
    container_name: ShortText | None = Field(default=None, description="Container name.")
    divisor: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Output format of the value, e.g. 1Mi."
    )


class EnvVarSource(KyklosModel):
    """Where an env variable's value comes from."""

    secret_key_ref: KeySelector | None = Field(default=None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap."
    )
    field_ref: FieldSelector | None = Field(default=None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="A resource of the container."
    )


class EnvVar(KyklosModel):
    """An env variable, with a value or a source (as in a Pod spec)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(RESERVED_ENV_RULE))

    name: EnvName = Field(
        description="Variable name; not KYKLOS_* nor the distributed-training set."
    )
    value: Annotated[str, StringConstraints(max_length=32768)] | None = Field(
        default=None, description="Literal value."
    )
    value_from: EnvVarSource | None = Field(default=None, description="Source of the value.")

    @model_validator(mode="after")
    def _not_reserved(self) -> EnvVar:
        if reserved_env_name(self.name):
            raise RESERVED_ENV_RULE.error()
        return self


class NamedReference(KyklosModel):
    """A Secret or ConfigMap by name."""

    name: ObjectName = Field(description="Name of the object in the same namespace.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class EnvFromSource(KyklosModel):
    """Every key of a Secret or ConfigMap as env variables."""

    secret_ref: NamedReference | None = Field(default=None, description="A Secret.")
    config_map_ref: NamedReference | None = Field(default=None, description="A ConfigMap.")
    prefix: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Prefix added to every key."
    )


class SeccompProfile(KyklosModel):
    """The seccomp profile of a pod or container."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(
        description="RuntimeDefault, Localhost or Unconfined."
    )
    localhost_profile: ShortText | None = Field(
        default=None, description="Profile file, with type Localhost."
    )


class Capabilities(KyklosModel):
    """Linux capabilities a container drops (adding any is not offered)."""

    drop: list[Annotated[str, StringConstraints(max_length=64)]] | None = Field(
        default=None, max_length=64, description="Capabilities to drop, e.g. [ALL]."
    )


class ContainerSecurityContext(KyklosModel):
    """Overrides of the container's securityContext (privileged is never allowed)."""

    run_as_user: int | None = Field(default=None, ge=0, description="UID the container runs as.")
    run_as_group: int | None = Field(default=None, ge=0, description="Primary GID.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to start as root.")
    read_only_root_filesystem: bool | None = Field(
        default=None, description="Mount the root filesystem read-only."
    )
    allow_privilege_escalation: bool | None = Field(
        default=None, description="Whether a process may gain more privileges than its parent."
    )
    privileged: FalseOnly | None = Field(
        default=None, description="Must be false: Kyklos never runs privileged containers."
    )
    capabilities: Capabilities | None = Field(default=None, description="Capabilities to drop.")
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Seccomp profile.")


class PodSecurityContext(KyklosModel):
    """Overrides of the pod's securityContext."""

    run_as_user: int | None = Field(default=None, ge=0, description="UID of every container.")
    run_as_group: int | None = Field(default=None, ge=0, description="Primary GID.")
    run_as_non_root: bool | None = Field(default=None, description="Refuse to start as root.")
    fs_group: int | None = Field(default=None, ge=0, description="GID owning mounted volumes.")
    supplemental_groups: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, max_length=32, description="Extra GIDs of every container."
    )
    seccomp_profile: SeccompProfile | None = Field(default=None, description="Seccomp profile.")


class KeyToPath(KyklosModel):
    """One key of a Secret or ConfigMap projected to a file."""

    key: KeyName = Field(description="The key.")
    path: ShortText = Field(description="Relative file path.")


class SecretVolume(KyklosModel):
    """A Secret as files."""

    secret_name: ObjectName = Field(description="Name of the Secret.")
    items: list[KeyToPath] | None = Field(default=None, max_length=64, description="Keys.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class ConfigMapVolume(KyklosModel):
    """A ConfigMap as files."""

    name: ObjectName = Field(description="Name of the ConfigMap.")
    items: list[KeyToPath] | None = Field(default=None, max_length=64, description="Keys.")
    optional: bool | None = Field(default=None, description="Whether it may be missing.")


class EmptyDirVolume(KyklosModel):
    """A scratch directory living as long as the pod."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="'' or Memory.")
    size_limit: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="Size limit, e.g. 1Gi."
    )


class ClaimVolume(KyklosModel):
    """A PersistentVolumeClaim of the same namespace."""

    claim_name: ObjectName = Field(description="Name of the claim.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")


class Volume(KyklosModel):
    """A pod volume: a Secret, ConfigMap, emptyDir or claim (no host paths)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(RESERVED_VOLUME_RULE, ONE_VOLUME_SOURCE))

    name: VolumeName = Field(description="Volume name; not tmp, pvc-* or kyklos-*.")
    secret: SecretVolume | None = Field(default=None, description="A Secret as files.")
    config_map: ConfigMapVolume | None = Field(default=None, description="A ConfigMap as files.")
    empty_dir: EmptyDirVolume | None = Field(default=None, description="A scratch directory.")
    persistent_volume_claim: ClaimVolume | None = Field(default=None, description="A claim.")

    @model_validator(mode="after")
    def _not_reserved_one_source(self) -> Volume:
        if reserved_volume_name(self.name):
            raise RESERVED_VOLUME_RULE.error()
        sources = (self.secret, self.config_map, self.empty_dir, self.persistent_volume_claim)
        if sum(source is not None for source in sources) != 1:
            raise ONE_VOLUME_SOURCE.error()
        return self


class VolumeMount(KyklosModel):
    """Where a template volume appears in the container."""

    name: VolumeName = Field(description="Name of a volume of the template.")
    mount_path: Annotated[str, StringConstraints(pattern=r"^/", max_length=1024)] = Field(
        description="Absolute path in the container (Kyklos's own mount paths win)."
    )
    read_only: bool | None = Field(default=None, description="Mount read-only.")
    sub_path: ShortText | None = Field(default=None, description="Sub-path of the volume.")


class ContainerOverrides(KyklosModel):
    """Additions to the main container (trainer or model server)."""

    env: list[EnvVar] | None = Field(
        default=None, max_length=256, description="Env variables, with value or valueFrom."
    )
    env_from: list[EnvFromSource] | None = Field(
        default=None, max_length=32, description="Secrets and ConfigMaps as env variables."
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Requests and limits, extended resources included (nvidia.com/gpu: 1).",
    )
    security_context: ContainerSecurityContext | None = Field(
        default=None, description="Overrides of the container's securityContext."
    )
    volume_mounts: list[VolumeMount] | None = Field(
        default=None, max_length=64, description="Mounts of the template's volumes."
    )


class PodTemplateMetadata(KyklosModel):
    """Labels and annotations added to the pods (Kyklos's own labels win)."""

    labels: StringMap | None = Field(default=None, description="Extra pod labels.")
    annotations: StringMap | None = Field(default=None, description="Extra pod annotations.")


class ObjectReference(KyklosModel):
    """A Secret by name."""

    name: ObjectName = Field(description="Name of the Secret.")


class PodTemplate(KyklosModel):
    """A restricted pod override merged onto the pods Kyklos builds.

    Kyklos's env, volumes, mounts and selector labels win; host namespaces and privileged
    containers cannot be asked for.
    """

    metadata: PodTemplateMetadata | None = Field(
        default=None, description="Extra labels and annotations of the pods."
    )
    service_account_name: ObjectName | None = Field(
        default=None, description="ServiceAccount the pods run as (its token is then mounted)."
    )
    node_selector: StringMap | None = Field(
        default=None, description="Node labels the pods must run on (added to Kyklos's)."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations, e.g. of a GPU node pool's taint."
    )
    # Node and pod (anti-)affinity is a deep structure the API server validates in full when
    # the pod's Job or Deployment is created; Kyklos only passes it through.
    affinity: dict[str, Any] | None = Field(
        default=None,
        description="Node/pod affinity as in a Pod spec (validated by the API server).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    image_pull_secrets: list[ObjectReference] | None = Field(
        default=None, max_length=16, description="Secrets for pulling from private registries."
    )
    priority_class_name: ObjectName | None = Field(default=None, description="PriorityClass.")
    runtime_class_name: ObjectName | None = Field(
        default=None, description="RuntimeClass, e.g. nvidia."
    )
    security_context: PodSecurityContext | None = Field(
        default=None, description="Overrides of the pod's securityContext."
    )
    volumes: list[Volume] | None = Field(
        default=None,
        max_length=32,
        description="Extra volumes (Secret, ConfigMap, emptyDir, claim).",
    )
    host_network: FalseOnly | None = Field(
        default=None, description="Must be false: Kyklos pods never use the node's network."
    )
    host_pid: FalseOnly | None = Field(
        default=None,
        alias="hostPID",
        description="Must be false: Kyklos pods never share the node's PIDs.",
    )
    host_ipc: FalseOnly | None = Field(
        default=None,
        alias="hostIPC",
        description="Must be false: Kyklos pods never share the node's IPC.",
    )
    container: ContainerOverrides | None = Field(
        default=None, description="Additions to the main container."
    )
