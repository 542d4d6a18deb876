import { ECR_LOGIN, PUSH_AND_EXPORT, WORK_DIR } from './patch-os';

/**
 * Buildspec of the construct's "source" CodeBuild projects: rebuild the image from its source with
 * the base image pulled fresh (`--pull`), so base-image and OS fixes are picked up. Environment: as
 * for patch-os, plus SOURCE_LOCATION (s3://bucket/key.zip|.tar.gz, or a git URL, optionally
 * "#<branch-or-tag>"; CodeCommit HTTPS URLs use the project role) and DOCKERFILE (path in the source).
 * A project whose own source is the repository (checked out through a CodeConnections connection)
 * sets AUTOPATCH_SOURCE_CHECKED_OUT=true: the build copies CODEBUILD_SRC_DIR instead of fetching.
 * AUTOPATCH_PULL_THROUGH ("docker.io=<prefix> …") and AUTOPATCH_CACHE_REGISTRY (the account's
 * registry) make the build pull base images through ECR pull-through cache rules.
 * Exports IMAGE_DIGEST.
 */
const FETCH_SOURCE = `(
set -euo pipefail
src="$AUTOPATCH_WORK/src"
mkdir -p "$src" && cd "$src"
location="\${SOURCE_LOCATION%%#*}"
ref=""
case "$SOURCE_LOCATION" in *#*) ref="\${SOURCE_LOCATION#*#}" ;; esac
if [ "\${AUTOPATCH_SOURCE_CHECKED_OUT:-}" = true ]; then
  # The project's own source: CodeBuild checked the repository out through the connection.
  cp -a "$CODEBUILD_SRC_DIR/." "$src/"
else
case "$location" in
  s3://*.zip) aws s3 cp "$location" "$AUTOPATCH_WORK/source.zip" && unzip -q "$AUTOPATCH_WORK/source.zip" -d "$src" ;;
  s3://*.tar.gz|s3://*.tgz) aws s3 cp "$location" - | tar -xz -C "$src" ;;
  https://git-codecommit.*)
    git config --global credential.helper '!aws codecommit credential-helper $@'
    git config --global credential.UseHttpPath true
    git clone --depth 1 \${ref:+--branch "$ref"} "$location" "$src" ;;
  "") echo "SOURCE_LOCATION is empty: rebuild mode 'source' needs the target's sourceLocation" >&2; exit 1 ;;
  *) git clone --depth 1 \${ref:+--branch "$ref"} "$location" "$src" ;;
esac
fi
test -f "$src/\${DOCKERFILE:-Dockerfile}" || { echo "no \${DOCKERFILE:-Dockerfile} in $SOURCE_LOCATION" >&2; exit 1; }
)`;

/**
 * Base images through ECR pull-through cache: rewrites the FROM lines of the build's copy of the
 * Dockerfile whose image is on a registry AUTOPATCH_PULL_THROUGH names, to the cache repository
 * (`node:20` → `<registry>/<prefix>/library/node:20`, Docker Hub's official images live under
 * `library/`). Left as they are: build stages (`FROM build`), `scratch`, and references built from
 * ARGs (`FROM ${BASE}`), which the build cannot resolve before it runs. Each rewrite is logged.
 */
export const PULL_THROUGH_REWRITE = `(
set -euo pipefail
[ -n "\${AUTOPATCH_PULL_THROUGH:-}" ] || exit 0
dockerfile="$AUTOPATCH_WORK/src/\${DOCKERFILE:-Dockerfile}"
aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "$AUTOPATCH_CACHE_REGISTRY"
awk -v rules="$AUTOPATCH_PULL_THROUGH" -v cache="$AUTOPATCH_CACHE_REGISTRY" '
BEGIN { n = split(rules, r, " "); for (i = 1; i <= n; i++) { split(r[i], kv, "="); prefix[kv[1]] = kv[2] } }
toupper($1) == "FROM" {
  j = 2
  while (j < NF && $j ~ /^--/) j++
  image = $j
  name = ""
  if (j + 2 <= NF && toupper($(j + 1)) == "AS") name = tolower($(j + 2))
  if (image !~ /[$]/ && tolower(image) != "scratch" && !(tolower(image) in stage)) {
    host = "docker.io"; rest = image
    slash = index(image, "/")
    if (slash > 0) {
      first = substr(image, 1, slash - 1)
      if (first ~ /[.:]/ || first == "localhost") { host = first; rest = substr(image, slash + 1) }
    }
    if (host == "index.docker.io" || host == "registry-1.docker.io") host = "docker.io"
    if (host == "docker.io" && index(rest, "/") == 0) rest = "library/" rest
    if (host in prefix) {
      $j = cache "/" prefix[host] "/" rest
      print "autopatch: FROM " image " -> " $j > "/dev/stderr"
    }
  }
  if (name != "") stage[name] = 1
}
{ print }
' "$dockerfile" > "$AUTOPATCH_WORK/Dockerfile.pull-through"
cat "$AUTOPATCH_WORK/Dockerfile.pull-through" > "$dockerfile"
)`;

export interface SourceBuildSpecOptions {
  /**
   * CodeBuild's `env.secrets-manager`: variable → `<secret ARN>:<JSON key>`, read before the build
   * starts and masked in its logs.
   * @default - none
   */
  readonly secrets?: Readonly<Record<string, string>>;
  /**
   * Commands that log in to other registries with those variables, before the base images are pulled.
   * @default - none
   */
  readonly registryLogins?: readonly string[];
}

/** The source rebuild's buildspec, with the registry logins the construct was configured with. */
export const sourceBuildSpecFor = (options: SourceBuildSpecOptions = {}) => {
  const secrets = options.secrets ?? {};
  return {
    version: '0.2',
    env: {
      shell: 'bash',
      ...(Object.keys(secrets).length > 0 ? { 'secrets-manager': { ...secrets } } : {}),
      'exported-variables': ['IMAGE_DIGEST', 'PATCHED_IMAGE'],
    },
    phases: {
      pre_build: { commands: [WORK_DIR, ...ECR_LOGIN, ...(options.registryLogins ?? []), FETCH_SOURCE] },
      build: {
        commands: [
          PULL_THROUGH_REWRITE,
          // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
          'docker build --pull --file "$AUTOPATCH_WORK/src/${DOCKERFILE:-Dockerfile}" --label "autopatch.source=$IMAGE_URI" --label "autopatch.execution=$AUTOPATCH_EXECUTION" --tag "$TARGET_IMAGE" "$AUTOPATCH_WORK/src"',
        ],
      },
      post_build: {
        commands: ['if [ "$CODEBUILD_BUILD_SUCCEEDING" != 1 ]; then exit 1; fi', ...PUSH_AND_EXPORT],
      },
    },
  } as const;
};

/** The buildspec without registry logins (what `npm run test:image` runs). */
export const sourceBuildSpec = sourceBuildSpecFor();
