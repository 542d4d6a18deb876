/**
 * Buildspec of the construct's "patch-os" CodeBuild projects: an OS-package patch layer on top of the
 * running image, no source needed. Environment (set per build by the workflow, see
 * lambdas/workflow/plan-builds.ts): IMAGE_URI (<repositoryUri>@<digest> of the running image),
 * REPOSITORY_URI, TARGET_TAG, TARGET_IMAGE (<repositoryUri>:<TARGET_TAG>), PACKAGE_MANAGER
 * (apt | apk | dnf | yum | zypper | auto), AUTOPATCH_EXECUTION, AUTOPATCH_CVES.
 * Exports IMAGE_DIGEST (the pushed digest) for the workflow's rescan.
 */

/** Log in to the registry of an image reference (ECR: <account>.dkr.ecr.<region>.amazonaws.com). */
export const ECR_LOGIN = [
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
  'REGISTRY="${REPOSITORY_URI%%/*}"',
  'aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$REGISTRY"',
];

/** Push the built image, then export its digest (RepoDigests is filled by the push). */
export const PUSH_AND_EXPORT = [
  'docker push "$TARGET_IMAGE"',
  `IMAGE_DIGEST="$(docker inspect --format '{{index .RepoDigests 0}}' "$TARGET_IMAGE" | cut -d@ -f2)"`,
  'case "$IMAGE_DIGEST" in sha256:*) ;; *) echo "could not read the pushed digest of $TARGET_IMAGE" >&2; exit 1;; esac',
  'PATCHED_IMAGE="$REPOSITORY_URI@$IMAGE_DIGEST"',
  'echo "pushed $PATCHED_IMAGE (from $IMAGE_URI)"',
];

/**
 * Writes the Dockerfile of the patch layer. The layer runs as root to upgrade packages, then restores
 * the image's own USER, ENTRYPOINT and CMD exactly (read with docker inspect): switching to root would
 * otherwise leak into the patched image, and an explicit restore keeps the runtime contract visible.
 * Runs in a subshell so its `set -euo pipefail` does not leak into CodeBuild's own shell.
 */
const WRITE_DOCKERFILE = `(
set -euo pipefail
user="$(docker inspect --format '{{.Config.User}}' "$IMAGE_URI")"
entrypoint="$(docker inspect --format '{{json .Config.Entrypoint}}' "$IMAGE_URI")"
cmd="$(docker inspect --format '{{json .Config.Cmd}}' "$IMAGE_URI")"
pm="\${PACKAGE_MANAGER:-auto}"
if [ "$pm" = auto ]; then
  # Inspector did not name the platform: find the package manager inside the image itself.
  pm="$(docker run --rm --user 0 --entrypoint /bin/sh "$IMAGE_URI" -c 'for p in apt-get apk dnf microdnf yum zypper; do if command -v "$p" >/dev/null 2>&1; then echo "$p"; exit 0; fi; done; echo none' || echo none)"
  [ "$pm" = apt-get ] && pm=apt
fi
case "$pm" in
  apt) upgrade='export DEBIAN_FRONTEND=noninteractive && apt-get update && apt-get -y -o Dpkg::Options::=--force-confold upgrade && apt-get clean && rm -rf /var/lib/apt/lists/*' ;;
  apk) upgrade='apk upgrade --no-cache' ;;
  dnf) upgrade='dnf -y upgrade --refresh && dnf clean all && rm -rf /var/cache/dnf' ;;
  microdnf) upgrade='microdnf -y upgrade && microdnf clean all' ;;
  yum) upgrade='yum -y update && yum clean all && rm -rf /var/cache/yum' ;;
  zypper) upgrade='zypper --non-interactive refresh && zypper --non-interactive update && zypper clean --all' ;;
  *) echo "No package manager in $IMAGE_URI (distroless or scratch): an OS patch layer cannot patch it. Use rebuild mode 'source' or 'project' for this service." >&2; exit 1 ;;
esac
mkdir -p /tmp/autopatch && cd /tmp/autopatch
{
  echo "FROM $IMAGE_URI"
  echo "USER root"
  echo "RUN $upgrade"
  if [ -n "$user" ]; then echo "USER $user"; fi
  if [ "$entrypoint" != null ]; then echo "ENTRYPOINT $entrypoint"; fi
  if [ "$cmd" != null ]; then echo "CMD $cmd"; fi
  echo "LABEL autopatch.source=\\"$IMAGE_URI\\" autopatch.execution=\\"$AUTOPATCH_EXECUTION\\""
} > Dockerfile
echo "--- patch layer ($pm) ---"; cat Dockerfile
)`;

export const patchOsBuildSpec = {
  version: '0.2',
  env: {
    shell: 'bash',
    'exported-variables': ['IMAGE_DIGEST', 'PATCHED_IMAGE'],
  },
  phases: {
    pre_build: {
      commands: [...ECR_LOGIN, 'docker pull "$IMAGE_URI"'],
    },
    build: {
      commands: [WRITE_DOCKERFILE, 'docker build --tag "$TARGET_IMAGE" /tmp/autopatch'],
    },
    post_build: {
      // post_build runs even when build failed: only push what was built.
      commands: ['if [ "$CODEBUILD_BUILD_SUCCEEDING" != 1 ]; then exit 1; fi', ...PUSH_AND_EXPORT],
    },
  },
} as const;
