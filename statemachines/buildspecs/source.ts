import { ECR_LOGIN, PUSH_AND_EXPORT, WORK_DIR } from './patch-os';

/**
 * Buildspec of the construct's "source" CodeBuild projects: rebuild the image from its source with
 * the base image pulled fresh (`--pull`), so base-image and OS fixes are picked up. Environment: as
 * for patch-os, plus SOURCE_LOCATION (s3://bucket/key.zip|.tar.gz, or a git URL, optionally
 * "#<branch-or-tag>"; CodeCommit HTTPS URLs use the project role) and DOCKERFILE (path in the source).
 * Exports IMAGE_DIGEST.
 */
const FETCH_SOURCE = `(
set -euo pipefail
src="$AUTOPATCH_WORK/src"
mkdir -p "$src" && cd "$src"
location="\${SOURCE_LOCATION%%#*}"
ref=""
case "$SOURCE_LOCATION" in *#*) ref="\${SOURCE_LOCATION#*#}" ;; esac
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
test -f "$src/\${DOCKERFILE:-Dockerfile}" || { echo "no \${DOCKERFILE:-Dockerfile} in $SOURCE_LOCATION" >&2; exit 1; }
)`;

export const sourceBuildSpec = {
  version: '0.2',
  env: {
    shell: 'bash',
    'exported-variables': ['IMAGE_DIGEST', 'PATCHED_IMAGE'],
  },
  phases: {
    pre_build: { commands: [WORK_DIR, ...ECR_LOGIN, FETCH_SOURCE] },
    build: {
      commands: [
        // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template.
        'docker build --pull --file "$AUTOPATCH_WORK/src/${DOCKERFILE:-Dockerfile}" --label "autopatch.source=$IMAGE_URI" --label "autopatch.execution=$AUTOPATCH_EXECUTION" --tag "$TARGET_IMAGE" "$AUTOPATCH_WORK/src"',
      ],
    },
    post_build: {
      commands: ['if [ "$CODEBUILD_BUILD_SUCCEEDING" != 1 ]; then exit 1; fi', ...PUSH_AND_EXPORT],
    },
  },
} as const;
