// `warden completion bash|zsh`: a completion script made from the command
// list, so it offers exactly the commands and options that exist.
import { OPTIONS, optionSpec, type OptionName } from './args.js';
import type { Command } from './context.js';

export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

interface Word {
  word: string;
  description: string;
}

interface Tree {
  /** Top-level words: single commands and groups. */
  top: Word[];
  /** A group's subcommands, e.g. issuers → list, add, remove. */
  groups: Map<string, Word[]>;
  /** The words after "issuers add" or "token": its options, and the values of its argument when they are fixed. */
  leaves: Map<string, Word[]>;
}

const COMMON: Word[] = [
  { word: '--help', description: 'print the help' },
  { word: '--version', description: 'print the version' },
];

/** Values of these options are paths: the shell completes file names after them. */
const PATH_VALUES = new Set(['FILE', 'DIR', 'PATH']);

function tree(commands: readonly Command[], groupSummaries: Readonly<Record<string, string>>): Tree {
  const t: Tree = { top: [], groups: new Map(), leaves: new Map() };
  for (const c of commands) {
    const [first, second] = c.name.split(' ') as [string, string | undefined];
    if (second === undefined) {
      t.top.push({ word: first, description: c.summary });
    } else {
      if (!t.groups.has(first)) {
        t.groups.set(first, []);
        t.top.push({ word: first, description: groupSummaries[first] ?? '' });
      }
      t.groups.get(first)!.push({ word: second, description: c.summary });
    }
    const options = c.options.map((ref) => {
      const spec = optionSpec(ref);
      return { word: spec.flags.replace(/^-\w, /, '').replace(/ <.*$/, ''), description: spec.description };
    });
    const fixed = (c.argument?.choices ?? []).map((word) => ({ word, description: c.argument!.description }));
    t.leaves.set(c.name, [...fixed, ...options, ...COMMON]);
  }
  // commander's `warden help COMMAND`
  t.leaves.set('help', [...t.top]);
  t.top.push({ word: 'help', description: 'print the help of a command' });
  return t;
}

/** The options that take a value: a path, one of a few choices, or anything else. */
function valueOptions(): { paths: string[]; choices: { flags: string[]; values: string[] }[]; others: string[] } {
  const paths: string[] = [];
  const choices: { flags: string[]; values: string[] }[] = [];
  const others: string[] = [];
  for (const name of Object.keys(OPTIONS) as OptionName[]) {
    const o: { value: string; short?: string; choices?: readonly string[] } = OPTIONS[name];
    if (!o.value) continue;
    const flags = [...(o.short ? [`-${o.short}`] : []), `--${name}`];
    if (o.choices) choices.push({ flags, values: [...o.choices] });
    else (PATH_VALUES.has(o.value) ? paths : others).push(...flags);
  }
  return { paths, choices, others };
}

/** Single-quoted for the shell. */
const q = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;
const words = (list: Word[]) => q(list.map((w) => w.word).join(' '));

function bash(t: Tree): string {
  const { paths, choices, others } = valueOptions();
  const groups = [...t.groups.keys()];
  const lines = [
    '# bash completion for warden. Load it with: source <(warden completion bash)',
    '_warden() {',
    '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} command=${COMP_WORDS[1]} words=',
    '  COMPREPLY=()',
    '  if (( COMP_CWORD == 1 )); then',
    `    COMPREPLY=($(compgen -W ${words(t.top)} -- "$cur"))`,
    '    return',
    '  fi',
    '  case $command in',
    `    ${groups.join('|')})`,
    '      if (( COMP_CWORD == 2 )); then',
    '        case $command in',
    ...groups.map((g) => `          ${g}) words=${words(t.groups.get(g)!)} ;;`),
    '        esac',
    '        COMPREPLY=($(compgen -W "$words" -- "$cur"))',
    '        return',
    '      fi',
    '      command="$command ${COMP_WORDS[2]}" ;;',
    '  esac',
    '  case $prev in',
    `    ${paths.join('|')})`,
    '      compopt -o filenames 2>/dev/null',
    '      COMPREPLY=($(compgen -f -- "$cur"))',
    '      return ;;',
    ...choices.flatMap((c) => [`    ${c.flags.join('|')})`, `      COMPREPLY=($(compgen -W ${q(c.values.join(' '))} -- "$cur"))`, '      return ;;']),
    `    ${others.join('|')})`,
    '      return ;;',
    '  esac',
    '  case $command in',
    ...[...t.leaves].map(([name, list]) => `    ${q(name)}) words=${words(list)} ;;`),
    '  esac',
    '  COMPREPLY=($(compgen -W "$words" -- "$cur"))',
    '}',
    'complete -F _warden warden',
    '',
  ];
  return lines.join('\n');
}

/** zsh's _describe entries, "word:description", one per line. */
const described = (list: Word[], indent: string) => list.map((w) => `${indent}${q(`${w.word.replace(/:/g, '\\:')}:${w.description}`)}`).join('\n');

function zsh(t: Tree): string {
  const { paths, choices, others } = valueOptions();
  const groups = [...t.groups.keys()];
  const lines = [
    '#compdef warden',
    '# zsh completion for warden. Load it with: source <(warden completion zsh)',
    '# (after compinit), or save it as _warden in a directory of $fpath.',
    '_warden() {',
    '  local command=${words[2]}',
    '  local -a items',
    '  if (( CURRENT == 2 )); then',
    '    items=(',
    described(t.top, '      '),
    '    )',
    "    _describe -t commands 'warden command' items",
    '    return',
    '  fi',
    '  case $command in',
    `    ${groups.join('|')})`,
    '      if (( CURRENT == 3 )); then',
    '        case $command in',
    ...groups.flatMap((g) => [`          ${g}) items=(`, described(t.groups.get(g)!, '            '), '          ) ;;']),
    '        esac',
    '        _describe -t commands "warden $command command" items',
    '        return',
    '      fi',
    '      command="$command ${words[3]}" ;;',
    '  esac',
    '  case ${words[CURRENT-1]} in',
    `    ${paths.join('|')})`,
    '      _files',
    '      return ;;',
    ...choices.flatMap((c) => [`    ${c.flags.join('|')})`, `      _values 'value' ${c.values.map(q).join(' ')}`, '      return ;;']),
    `    ${others.join('|')})`,
    "      _message 'value'",
    '      return ;;',
    '  esac',
    '  case $command in',
    ...[...t.leaves].flatMap(([name, list]) => [`    ${q(name)}) items=(`, described(list, '      '), '    ) ;;']),
    '  esac',
    "  _describe -t options 'option' items",
    '}',
    'if [[ ${funcstack[1]} == _warden ]]; then',
    '  _warden "$@"',
    'else',
    '  compdef _warden warden',
    'fi',
    '',
  ];
  return lines.join('\n');
}

export function completionScript(shell: Shell, commands: readonly Command[], groupSummaries: Readonly<Record<string, string>>): string {
  const t = tree(commands, groupSummaries);
  return shell === 'bash' ? bash(t) : zsh(t);
}
