/**
 * Membership inference: how well an attacker who sees a model's loss on an example can tell
 * whether the example was in the training data. The loss-threshold attack of Yeom, Giacomelli,
 * Fredrikson, Jha 2018 ("Privacy Risk in Machine Learning: Analyzing the Connection to
 * Overfitting", IEEE CSF, arXiv:1709.01604), summarised over every threshold by the area under
 * its ROC curve.
 */

/**
 * The area under the ROC curve of a score that should be higher for members: the Mann–Whitney
 * statistic U / (m·n), i.e. P(s_member > s_nonMember) + ½·P(s_member = s_nonMember) for a member
 * and a non-member drawn uniformly and independently (Hanley & McNeil 1982, "The Meaning and Use of
 * the Area under a Receiver Operating Characteristic (ROC) Curve", Radiology 143).
 *
 * Computed from ranks: all m + n scores are sorted, each tie group gets the average of the ranks
 * it spans (1-based), and U = R_members − m(m + 1)/2 with R_members the members' rank sum. Average
 * ranks are multiples of ½, so U is exact in float64 (for m + n < 2^26) and the result equals the
 * O(m·n) pairwise count exactly. −0 and +0 tie; ±Infinity are ordinary values (equal infinities
 * tie). Time O((m + n) log(m + n)), memory O(m + n).
 *
 * @param memberScores scores of the m ≥ 1 positives (members), any order.
 * @param nonMemberScores scores of the n ≥ 1 negatives (non-members), any order.
 * @returns the AUC in [0, 1]: 1 when every member scores above every non-member, 0 when below,
 *   0.5 when the scores do not tell them apart any better than chance (all tied, or the same distribution).
 * @throws RangeError when either input is empty or holds a NaN.
 */
export function rocAuc(memberScores: ArrayLike<number>, nonMemberScores: ArrayLike<number>): number {
  const m = memberScores.length;
  const n = nonMemberScores.length;
  if (m === 0 || n === 0) throw new RangeError(`rocAuc needs at least one score of each kind, got ${m} member and ${n} non-member scores`);
  const total = m + n;
  const values = new Float64Array(total);
  for (let i = 0; i < m; i++) {
    const v = memberScores[i];
    if (Number.isNaN(v)) throw new RangeError(`rocAuc: member score ${i} is NaN`);
    values[i] = v;
  }
  for (let j = 0; j < n; j++) {
    const v = nonMemberScores[j];
    if (Number.isNaN(v)) throw new RangeError(`rocAuc: non-member score ${j} is NaN`);
    values[m + j] = v;
  }
  // Indices 0..m−1 are members, m..m+n−1 non-members. A total order without NaN: -0 and +0 compare equal.
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  order.sort((a, b) => (values[a] < values[b] ? -1 : values[a] > values[b] ? 1 : 0));
  let memberRankSum = 0;
  for (let start = 0; start < total; ) {
    let end = start + 1;
    let members = order[start] < m ? 1 : 0;
    while (end < total && values[order[end]] === values[order[start]]) {
      if (order[end] < m) members++;
      end++;
    }
    // Positions start..end−1 hold ranks start+1..end, whose average is (start + 1 + end)/2.
    memberRankSum += (members * (start + 1 + end)) / 2;
    start = end;
  }
  const u = memberRankSum - (m * (m + 1)) / 2;
  return u / (m * n);
}

/**
 * The loss-threshold membership-inference attack of Yeom et al. 2018 ("Privacy Risk in Machine
 * Learning: Analyzing the Connection to Overfitting", IEEE CSF, arXiv:1709.01604): the attacker
 * guesses "member" when the model's loss on an example is below a threshold τ. Sweeping τ over
 * every value traces the attack's ROC curve; this returns its area, i.e. {@link rocAuc} of the
 * negated losses (a lower loss scores higher): the probability that a random member has a lower
 * loss than a random non-member, ties counting ½. The AUC summarises the attack over every τ at once,
 * so it does not depend on how an attacker would choose τ.
 *
 * @param memberLosses per-example losses (e.g. cross-entropy in nats) of m ≥ 1 training examples (members).
 * @param nonMemberLosses per-example losses of n ≥ 1 examples the model never trained on (non-members),
 *   from the same distribution.
 * @returns the attack's AUC in [0, 1]: 0.5 means the attacker does no better than chance (the
 *   losses do not reveal membership), 1 that every member has a lower loss than every non-member.
 *   Below 0.5 the members have the higher losses (the attack would do better inverted).
 * @throws RangeError when either input is empty or holds a NaN.
 */
export function lossThresholdAuc(memberLosses: ArrayLike<number>, nonMemberLosses: ArrayLike<number>): number {
  const neg = (a: ArrayLike<number>): Float64Array => {
    const out = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = -a[i];
    return out;
  };
  return rocAuc(neg(memberLosses), neg(nonMemberLosses));
}
