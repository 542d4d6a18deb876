/**
 * Buildspec of the construct's "patch-os" CodeBuild projects: an OS-package patch layer on top of the
 * running image, no source needed. Environment (set per build by the workflow, see
 * lambdas/workflow/plan-builds.ts): IMAGE_URI (<repositoryUri>@<digest> of the running image),
 * REPOSITORY_URI, TARGET_TAG, TARGET_IMAGE (<repositoryUri>:<TARGET_TAG>), PACKAGE_MANAGER
 * (apt | apk | dnf | yum | zypper | auto: a hint, the image is probed), PATCH_SCOPE (vulnerable | all),
 * PATCH_PACKAGES ("name=fixedVersion" or "name", space-separated), AUTOPATCH_EXECUTION, AUTOPATCH_CVES.
 * Exports IMAGE_DIGEST (the pushed digest) for the workflow's rescan.
 *
 * Every command runs in CodeBuild's one bash session (buildspec 0.2): variables set by one command
 * are seen by the next. `npm run test:image` runs these very commands against a real registry.
 */

/**
 * Log in to the registry of an image reference (ECR: <account>.dkr.ecr.<region>.amazonaws.com), the
 * registry the image came from, so the patched image is pushed next to it. In the hub's own registry
 * (neither variable set) this is the login it always was: the build's role, the build's Region. An
 * image in another Region gets AUTOPATCH_REGISTRY_REGION (the repository URI's Region); in another
 * account also AUTOPATCH_REGISTRY_ROLE_ARN, that account's spoke role (which grants ECR pull and push
 * there): the login runs with its credentials, in a subshell, so no later command (a pull-through
 * cache login, the push's own AWS calls) runs as the spoke. See plan-builds.ts registryVariables.
 */
export const ECR_LOGIN = [
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
  'REGISTRY="${REPOSITORY_URI%%/*}"',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
  'REGISTRY_REGION="${AUTOPATCH_REGISTRY_REGION:-$AWS_REGION}"',
  [
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
    'if [ -n "${AUTOPATCH_REGISTRY_ROLE_ARN:-}" ]; then (',
    'set -euo pipefail;',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
    'read -r AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN < <(aws sts assume-role --role-arn "$AUTOPATCH_REGISTRY_ROLE_ARN" --role-session-name "autopatch-build-${CODEBUILD_BUILD_NUMBER:-0}" --query "Credentials.[AccessKeyId,SecretAccessKey,SessionToken]" --output text);',
    'export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN;',
    'aws ecr get-login-password --region "$REGISTRY_REGION" | docker login --username AWS --password-stdin "$REGISTRY"',
    '); else aws ecr get-login-password --region "$REGISTRY_REGION" | docker login --username AWS --password-stdin "$REGISTRY"; fi',
  ].join(' '),
];

/** Where a build writes its files (the Dockerfile, the push log). */
export const WORK_DIR =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
  'AUTOPATCH_WORK="${TMPDIR:-/tmp}/autopatch" && rm -rf "$AUTOPATCH_WORK" && mkdir -p "$AUTOPATCH_WORK"';

/**
 * Push the built image, then export the digest the registry now holds. Docker prints it as the push's
 * last line ("<tag>: digest: sha256:… size: …"); RepoDigests (filled by the push) is the fallback, for
 * this repository only: an image can carry digests of other repositories too.
 */
export const PUSH_AND_EXPORT = [
  '( set -o pipefail; docker push "$TARGET_IMAGE" | tee "$AUTOPATCH_WORK/push.log" )',
  `IMAGE_DIGEST="$(sed -n 's/.*digest: \\(sha256:[0-9a-f]\\{64\\}\\).*/\\1/p' "$AUTOPATCH_WORK/push.log" | tail -n 1)"`,
  `if [ -z "$IMAGE_DIGEST" ]; then IMAGE_DIGEST="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$TARGET_IMAGE" | grep -F "$REPOSITORY_URI@" | head -n 1 | cut -d@ -f2)"; fi`,
  'case "$IMAGE_DIGEST" in sha256:*) ;; *) echo "could not read the pushed digest of $TARGET_IMAGE" >&2; exit 1;; esac',
  'PATCHED_IMAGE="$REPOSITORY_URI@$IMAGE_DIGEST"',
  'echo "pushed $PATCHED_IMAGE (from $IMAGE_URI)"',
];

/**
 * The patch layer itself: a POSIX sh script run as root inside the image (dash, busybox ash, bash).
 * The buildspec prepends PATCH_PM (the package manager found in the image), PATCH_SCOPE and
 * PATCH_PACKAGES, checked to safe characters. With PATCH_SCOPE=vulnerable it upgrades only the
 * installed packages the findings name (by binary name, or built from that source package), with the
 * dependencies their new versions need, as Copacetic does with a scanner report; with "all", every
 * package with an update. Either way it then fails the build, naming the package, when an installed
 * version is still below the version that fixes it: before any push, let alone a rescan.
 */
export const PATCH_LAYER_SCRIPT = `set -eu
set -f
say() { echo "autopatch: $*"; }
fail() { echo "autopatch: $*" >&2; exit 1; }

# "name version source" of every installed package, one per line.
installed() {
  case "$PATCH_PM" in
    apt)
      dpkg-query -W -f '\${db:Status-Status} \${Package} \${Version} \${source:Package}\\n' |
        while read -r status name version source; do
          if [ "$status" = installed ]; then echo "$name $version \${source:-$name}"; fi
        done ;;
    apk)
      # "musl-1.2.4-r2 x86_64 {musl} (MIT) [installed]": the version is the last two dash-separated parts.
      apk list --installed 2>/dev/null |
        while read -r nvr _ origin _; do
          nv="\${nvr%-*}"; name="\${nv%-*}"; origin="\${origin#\\{}"
          echo "$name \${nv##*-}-\${nvr##*-} \${origin%\\}}"
        done ;;
    *)
      rpm -qa --qf '%{NAME} %|EPOCH?{%{EPOCH}}:{0}|:%{VERSION}-%{RELEASE} %{SOURCERPM}\\n' |
        while read -r name evr srpm; do
          src="\${srpm%-*}"; echo "$name $evr \${src%-*}"
        done ;;
  esac
}

# lt A B: is version A older than B, in the package manager's own ordering?
lt() {
  case "$PATCH_PM" in
    apt) dpkg --compare-versions "$1" lt "$2" ;;
    apk) [ "$(apk version -t "$1" "$2")" = "<" ] ;;
    *)
      a="$1"; b="$2"
      case "$a" in *:*) ;; *) a="0:$a" ;; esac
      case "$b" in *:*) ;; *) b="0:$b" ;; esac
      r="$(rpm --eval "%{lua: print(rpm.vercmp('$a', '$b'))}" 2>/dev/null || true)"
      case "$r" in
        -1) return 0 ;;
        0|1) return 1 ;;
        *) [ "$a" != "$b" ] && [ "$(printf '%s\\n%s\\n' "$a" "$b" | sort -V | head -n 1)" = "$a" ] ;;
      esac ;;
  esac
}

# The installed packages called $1, or built from source package $1.
named() {
  printf '%s\\n' "$before" | while read -r name _ source; do
    if [ "$name" = "$1" ] || [ "$source" = "$1" ]; then echo "$name"; fi
  done
}

before="$(installed)"
targets=""
if [ "$PATCH_SCOPE" = vulnerable ]; then
  for entry in $PATCH_PACKAGES; do
    hits="$(named "\${entry%%=*}")"
    [ -n "$hits" ] || fail "\${entry%%=*} is named by the findings but no installed package is called so or built from it: this image cannot be patched in place; use rebuild mode 'source' or 'project'"
    targets="$targets $hits"
  done
  # shellcheck disable=SC2086 # one word per package
  say "upgrading only the vulnerable packages:" $targets
else
  say "upgrading every package with an update"
fi

case "$PATCH_PM" in
  apt)
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o Acquire::Languages=none update
    # install --only-upgrade upgrades the named packages and installs what their new versions need.
    set -- -y --no-install-recommends -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef
    # shellcheck disable=SC2086 # one word per package
    if [ -n "$targets" ]; then apt-get install "$@" --only-upgrade $targets
    else apt-get "$@" --with-new-pkgs upgrade; fi
    apt-get clean
    set +f
    rm -rf /var/lib/apt/lists/*
    set -f ;;
  apk)
    # shellcheck disable=SC2086 # one word per package
    if [ -n "$targets" ]; then apk upgrade --no-cache $targets; else apk upgrade --no-cache; fi ;;
  dnf)
    # shellcheck disable=SC2086 # one word per package (none: every update)
    dnf -y upgrade --refresh $targets
    dnf clean all
    rm -rf /var/cache/dnf ;;
  microdnf)
    # shellcheck disable=SC2086 # one word per package (none: every update)
    microdnf -y upgrade $targets
    microdnf clean all ;;
  yum)
    # shellcheck disable=SC2086 # one word per package (none: every update)
    yum -y update $targets
    yum clean all
    rm -rf /var/cache/yum ;;
  zypper)
    zypper --non-interactive refresh
    # shellcheck disable=SC2086 # one word per package (none: every update)
    zypper --non-interactive update $targets
    zypper clean --all ;;
  *) fail "unknown package manager $PATCH_PM" ;;
esac

# The fix must be installed now, not at the rescan an hour later.
after="$(installed)"
below=""
for entry in $PATCH_PACKAGES; do
  case "$entry" in *=*) ;; *) continue ;; esac
  want="\${entry%%=*}"; fix="\${entry#*=}"
  below="$below$(printf '%s\\n' "$after" | while read -r name version source; do
    if { [ "$name" = "$want" ] || [ "$source" = "$want" ]; } && lt "$version" "$fix"; then
      printf ' %s %s (fixed in %s);' "$name" "$version" "$fix"
    fi
  done)"
done
[ -z "$below" ] || fail "still below the fixed version after the upgrade:$below check the image's package sources (a fix not published for this release cannot be installed)"
say "patched; installed versions of the named packages:"
for entry in $PATCH_PACKAGES; do printf '%s\\n' "$after" | while read -r name version source; do
  if [ "$name" = "\${entry%%=*}" ] || [ "$source" = "\${entry%%=*}" ]; then echo "  $name $version"; fi
done; done
`;

/**
 * Writes the patch layer's Dockerfile and script. The layer runs as root to upgrade packages, then
 * restores the image's own USER, ENTRYPOINT and CMD exactly (read with docker inspect): switching to
 * root would otherwise leak into the patched image, and setting ENTRYPOINT resets CMD. WORKDIR, ENV and
 * labels are inherited from FROM unchanged. Runs in a subshell so its `set -euo pipefail` does not leak
 * into CodeBuild's own shell.
 */
const WRITE_DOCKERFILE = `(
set -euo pipefail
cd "$AUTOPATCH_WORK"
scope="\${PATCH_SCOPE:-all}"
case "$scope" in
  vulnerable) [ -n "\${PATCH_PACKAGES:-}" ] || { echo "PATCH_SCOPE=vulnerable needs PATCH_PACKAGES (name=fixedVersion ...)" >&2; exit 1; } ;;
  all) ;;
  *) echo "PATCH_SCOPE must be 'vulnerable' or 'all', not '$scope'" >&2; exit 1 ;;
esac
case "\${PATCH_PACKAGES:-}" in
  *[!A-Za-z0-9.+~:_=\\ -]*) echo "PATCH_PACKAGES has characters a package name or version cannot have: $PATCH_PACKAGES" >&2; exit 1 ;;
esac
user="$(docker inspect --format '{{.Config.User}}' "$IMAGE_URI")"
entrypoint="$(docker inspect --format '{{json .Config.Entrypoint}}' "$IMAGE_URI")"
cmd="$(docker inspect --format '{{json .Config.Cmd}}' "$IMAGE_URI")"
# Probe the image for its package managers (minimal images have microdnf, not dnf). The platform's
# hint wins when the image has it.
if ! found="$(docker run --rm --user 0 --entrypoint /bin/sh "$IMAGE_URI" -c 'for p in apt-get apk dnf microdnf yum zypper; do if command -v "$p" >/dev/null 2>&1; then echo "$p"; fi; done' | sed 's/^apt-get$/apt/')"; then
  echo "could not run /bin/sh in $IMAGE_URI to find its package manager" >&2
fi
pm=""
hint="\${PACKAGE_MANAGER:-auto}"
if [ "$hint" != auto ] && printf '%s\\n' "$found" | grep -qx "$hint"; then pm="$hint"; fi
if [ -z "$pm" ]; then pm="$(printf '%s\\n' "$found" | head -n 1)"; fi
if [ -z "$pm" ]; then
  echo "No package manager in $IMAGE_URI (distroless or scratch): an OS patch layer cannot patch it. Use rebuild mode 'source' or 'project' for this service." >&2
  exit 1
fi
{
  printf "PATCH_PM='%s'\\nPATCH_SCOPE='%s'\\nPATCH_PACKAGES='%s'\\n" "$pm" "$scope" "\${PATCH_PACKAGES:-}"
  cat <<'AUTOPATCH_PATCH_LAYER'
${PATCH_LAYER_SCRIPT}AUTOPATCH_PATCH_LAYER
} > patch-layer.sh
{
  echo "FROM $IMAGE_URI"
  echo "USER root"
  echo "COPY patch-layer.sh /autopatch-patch-layer.sh"
  echo "RUN /bin/sh /autopatch-patch-layer.sh && rm -f /autopatch-patch-layer.sh"
  if [ -n "$user" ]; then echo "USER $user"; fi
  if [ "$entrypoint" != null ]; then echo "ENTRYPOINT $entrypoint"; fi
  if [ "$cmd" != null ]; then echo "CMD $cmd"; fi
  echo "LABEL autopatch.source=\\"$IMAGE_URI\\" autopatch.execution=\\"$AUTOPATCH_EXECUTION\\" autopatch.packages=\\"$scope\\""
} > Dockerfile
echo "--- patch layer ($pm, $scope: \${PATCH_PACKAGES:-every update}) ---"; cat Dockerfile
)`;

export const patchOsBuildSpec = {
  version: '0.2',
  env: {
    shell: 'bash',
    'exported-variables': ['IMAGE_DIGEST', 'PATCHED_IMAGE'],
  },
  phases: {
    pre_build: {
      commands: [WORK_DIR, ...ECR_LOGIN, 'docker pull "$IMAGE_URI"'],
    },
    build: {
      commands: [WRITE_DOCKERFILE, 'docker build --tag "$TARGET_IMAGE" "$AUTOPATCH_WORK"'],
    },
    post_build: {
      // post_build runs even when build failed: only push what was built.
      commands: ['if [ "$CODEBUILD_BUILD_SUCCEEDING" != 1 ]; then exit 1; fi', ...PUSH_AND_EXPORT],
    },
  },
} as const;
