#!/usr/bin/env bash
# The offline DPO recipe behind the README's "Does DPO help?" table: one round from a policy, measured on every
# test user against that policy. Each step is one `lettingo` command; a rerun resumes where it stopped.
#
#   trainer/recipes/offline_dpo_claim.sh POLICY OUT [BASE_TEST_JSONL]
#
# POLICY: a model folder (a nano build, or a previous round's registry version for an on-policy second round).
# OUT: a folder for every intermediate file. BASE_TEST_JSONL: the base's test profiles to compare against
# (default: the POLICY's own, written to OUT/test_base.jsonl).
# Environment: SAMPLES (8) policy samples per train user and position; WRITERS (1) adds one profile from each of
# the six writers to the candidates, as the paper explores with several LLMs; POSITIONS ("1 11 21") the history
# positions a train user is explored at (each with its own 10 later targets and its own pairs);
# PAIRS (4) pairs per user and position, widest reward gaps first (round 9; rounds 1-8 used 1: best vs worst);
# LOSS (sigmoid; "sigmoid,sft" adds the chosen profiles' NLL), LR (5e-4), EPOCHS (2), BETA (0.1).
set -euo pipefail
POLICY=${1:?usage: $0 POLICY OUT [BASE_TEST_JSONL]}
OUT=${2:?usage: $0 POLICY OUT [BASE_TEST_JSONL]}
SAMPLES=${SAMPLES:-8} WRITERS=${WRITERS:-1} POSITIONS=${POSITIONS:-1 11 21} PAIRS=${PAIRS:-4}
LOSS=${LOSS:-sigmoid} LR=${LR:-5e-4} EPOCHS=${EPOCHS:-2} BETA=${BETA:-0.1}
D=${LETTINGO_DATASET:-../shared/data/ml-latest-small}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # on a shared 2-core machine, torch's spinning threads cost 2-3x
cd "$(dirname "$0")/../.." && source .venv/bin/activate
mkdir -p "$OUT"
BASE_TEST=${3:-$OUT/test_base.jsonl}

: > "$OUT/pairs.jsonl.tmp"
for P in $POSITIONS; do
  O=$OUT/pos$P; mkdir -p "$O"
  [ -s "$O/cands.jsonl" ] || lettingo explore "$D" -g "$SAMPLES*hf:$POLICY" --group train --offset "$P" --seed 7 \
    --batch-size 32 --out "$O/cands.jsonl"
  CANDS=$O/cands.jsonl
  if [ "$WRITERS" = 1 ]; then
    W=(); for w in titles genres era strictness combined poor; do W+=(-g "1*writer:$w"); done
    [ -s "$O/cands_writers.jsonl" ] || lettingo explore "$D" "${W[@]}" --group train --offset "$P" --out "$O/cands_writers.jsonl"
    # one line per (user, position) with every source's candidates
    python - "$O/cands.jsonl" "$O/cands_writers.jsonl" "$O/cands_merged.jsonl" <<'PY'
import json, sys
rows = {}
for path in sys.argv[1:3]:
    for line in open(path):
        r = json.loads(line)
        key = (r["user_id"], r["position"])
        if key in rows:
            assert rows[key]["prompt"] == r["prompt"], key
            rows[key]["candidates"] += r["candidates"]
        else:
            rows[key] = r
with open(sys.argv[3], "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows.values())
PY
    CANDS=$O/cands_merged.jsonl
  fi
  # Rewards: ranking over the 10 ratings after the position x 10 negative draws (position >= 1: never the test target)
  lettingo evaluate "$CANDS" --dataset "$D" --task ranking --targets-per-user 10 --draws 10 --offset "$P" \
    --out "$O/rewards.jsonl"
  lettingo pairs "$O/rewards.jsonl" --dataset "$D" --max-pairs-per-user "$PAIRS" --out "$O/pairs.jsonl"
  cat "$O/pairs.jsonl" >> "$OUT/pairs.jsonl.tmp"
done
mv "$OUT/pairs.jsonl.tmp" "$OUT/pairs.jsonl"
[ -d "$OUT/registry/profile-generator/v000001" ] ||
  lettingo train --pairs "$OUT/pairs.jsonl" --kind full --base-model "$POLICY" --registry "$OUT/registry" --no-publish \
    --loss-type "$LOSS" --lr "$LR" --beta "$BETA" --epochs "$EPOCHS" --batch-size 8 --max-length 768 --min-pairs 50
# Test users: 4 samples each at temperature 1, both held-out targets, 10 negative draws, paired bootstrap.
[ -s "$BASE_TEST" ] || lettingo explore "$D" -g "4*hf:$POLICY" --group test --seed 13 --batch-size 32 --out "$BASE_TEST"
[ -s "$OUT/test_dpo.jsonl" ] || lettingo explore "$D" -g "4*hf:$OUT/registry/profile-generator/v000001" --group test \
  --seed 13 --batch-size 32 --out "$OUT/test_dpo.jsonl"
lettingo compare -c base="$BASE_TEST" -c dpo="$OUT/test_dpo.jsonl" --contrast dpo=base --dataset "$D" \
  --json "$OUT/compare.json"
# The same comparison on fresh samples (seed 29, 8 per test user): one seed's +2 can be luck after many rounds.
[ -s "$OUT/test_base_s29.jsonl" ] || lettingo explore "$D" -g "8*hf:$POLICY" --group test --seed 29 --batch-size 32 \
  --out "$OUT/test_base_s29.jsonl"
[ -s "$OUT/test_dpo_s29.jsonl" ] || lettingo explore "$D" -g "8*hf:$OUT/registry/profile-generator/v000001" \
  --group test --seed 29 --batch-size 32 --out "$OUT/test_dpo_s29.jsonl"
lettingo compare -c base="$OUT/test_base_s29.jsonl" -c dpo="$OUT/test_dpo_s29.jsonl" --contrast dpo=base \
  --dataset "$D" --json "$OUT/compare_s29.json"
