/** Flags about local data files shared by `fedmq node` and `fedmq coordinator` (the README's "Data files"). */

/**
 * `--labels a,b,c`: the class names of a CSV's label column in class order (`a` is class 0),
 * split at commas and trimmed. An empty or repeated name is refused when the CSV is loaded
 * (`ML_BAD_OPTIONS`, see `loadCsv` of @fedmq/ml); names cannot contain commas.
 */
export function parseLabels(v: string): string[] {
  return v.split(',').map((s) => s.trim());
}

/** Help text of `--labels`. */
export const LABELS_HELP = 'class names of the CSV label column, in class order (a,b,c: a is class 0, b class 1 …); the same list on every node. Without it labels must be class numbers 0, 1, …';
