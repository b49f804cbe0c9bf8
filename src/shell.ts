/**
 * Text that regtrain writes into shell commands and scheduler files: quoting, so printed commands
 * run as printed, and the check that keeps names and paths from splitting a generated file's lines.
 */
import { InputError } from './errors';

/**
 * Characters that end or bend a line somewhere: C0 and C1 controls (newline, carriage return,
 * escape, NUL, NEL…), DEL, and Unicode's line and paragraph separators (YAML 1.1 parsers such as
 * go-yaml's, under kubectl, break lines at NEL, U+2028 and U+2029).
 */
const LINE_BENDING = /[\p{Cc}\p{Zl}\p{Zp}]/u;

/**
 * Refuses a name or path that would reach a generated artifact (k8s.yaml, slurm.sbatch,
 * parallel.sh, members.txt) with a character that could split a line there: no quoting keeps a
 * YAML comment, a `#SBATCH` line or one-command-per-line intact across a newline.
 */
export function checkArtifactText(label: string, value: string): void {
  const m = LINE_BENDING.exec(value);
  if (m) {
    const code = `U+${m[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
    // JSON.stringify leaves U+2028/U+2029 (and C1 controls) as they are: escape every one, so the message stays one line.
    const shown = JSON.stringify(value).replace(
      new RegExp(LINE_BENDING.source, 'gu'),
      (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`,
    );
    throw new InputError(
      `${label} ${shown}: contains a control character (${code}); names and paths written into scheduler files may not`,
    );
  }
}

/** POSIX-shell quoting, only where needed, so printed commands run as printed. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=,+@%-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
