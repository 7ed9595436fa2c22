/**
 * The package's commands (npm `bin`, issue 11): the compiled entry point gets a
 * `#!/usr/bin/env node` line and the executable bit, and its source map is shifted by that line.
 * The shebang is added here, not written in the source: JSR publishes the source as it is, where
 * Deno runs it (`deno run jsr:@momotor/shared-state/cli`) and a Node shebang would mislead.
 *
 * @module
 */

/** The first line of every bin file. */
export const SHEBANG = "#!/usr/bin/env node";

/**
 * `code` with the shebang line first (once), and its source map's `mappings` with an empty
 * generated line first, so that stack traces still point at the right source lines.
 */
export function withShebang(
  code: string,
  map: { mappings: string } | undefined,
): { code: string; map: { mappings: string } | undefined } {
  if (code.startsWith("#!")) return { code, map };
  return {
    code: `${SHEBANG}\n${code}`,
    map: map === undefined ? undefined : { ...map, mappings: `;${map.mappings}` },
  };
}

/** Adds the shebang to the compiled bin file `npmDir/file` and its map, and makes it executable. */
export async function makeExecutable(npmDir: string, file: string): Promise<void> {
  const path = `${npmDir}/${file}`;
  const mapPath = `${path}.map`;
  const map = await Deno.readTextFile(mapPath).then(JSON.parse, () => undefined);
  const result = withShebang(await Deno.readTextFile(path), map);
  await Deno.writeTextFile(path, result.code);
  if (result.map !== undefined) await Deno.writeTextFile(mapPath, JSON.stringify(result.map));
  await Deno.chmod(path, 0o755);
}

/** Problems with the bin files of `bins` in `npmDir`: missing, no shebang, not executable. */
export async function binProblems(npmDir: string, bins: Record<string, string>): Promise<string[]> {
  const problems: string[] = [];
  for (const [command, file] of Object.entries(bins)) {
    const path = `${npmDir}/${file}`;
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      problems.push(`bin ${command}: ${file} is missing`);
      continue;
    }
    if (!text.startsWith(`${SHEBANG}\n`)) {
      problems.push(`bin ${command}: ${file} does not start with ${SHEBANG}`);
    }
    const { mode } = await Deno.stat(path);
    if (mode !== null && (mode & 0o111) === 0) {
      problems.push(`bin ${command}: ${file} is not executable`);
    }
  }
  return problems;
}
