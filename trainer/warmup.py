"""SFT warm-up of a pretrained model on the profile writers' output, before exploration and DPO.

SmolLM2-135M-Instruct, asked for a profile, writes XML fragments and free association (issue 19): it cannot do
the task as it is, so exploration would give DPO nothing but noise to rank. As the nano model is, it is first
fine-tuned on what the six writers (lettingo.writers) write for training users' histories, in the prompts it will
be sampled with (within the same token budget), so its samples start from the writers' styles and DPO can
choose between them. Validation and test users are never looked at.

    python -m trainer.warmup BASE OUT [--users 120] [--profiles 2] [--prompt-tokens 384] [--epochs 2] [--lr 1e-4]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from pathlib import Path

from lettingo.data import LabelScheme, load_dataset, split_dataset
from lettingo.nano.sft_data import draw_profiles
from lettingo.prompts.profile import history_entries, profile_prompt_within
from lettingo.prompts.rendering import model_prompt
from trainer.sft import sft_on_profiles

log = logging.getLogger(__name__)


def writer_examples(
    dataset_path: Path, tokenizer, users: int, profiles: int, prompt_tokens: int, seed: int, offset: int = 1
) -> list[tuple[str, str]]:
    """(prompt text, writer profile) for the first ``users`` training users at history ``offset``."""
    dataset = load_dataset(dataset_path)
    labels = LabelScheme.for_scale(dataset.integer_scale)
    cases = split_dataset(dataset).cases(dataset, "train", offset=offset)[:users]

    def count(prompt) -> int:
        return len(tokenizer(model_prompt(tokenizer, prompt.text), add_special_tokens=False)["input_ids"])

    rng = random.Random(seed)
    examples = []
    for case in cases:
        prompt = profile_prompt_within(
            history_entries(case.long_history, dataset.items, labels), count, prompt_tokens, case.user_id
        )
        examples += [(prompt.text, text) for text in draw_profiles(prompt, profiles, rng)]
    return examples


def main(argv: list[str] | None = None) -> Path:
    from transformers import AutoTokenizer

    from lettingo.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", type=Path, default=None)
    parser.add_argument("--users", type=int, default=120)
    parser.add_argument("--profiles", type=int, default=2, help="writer profiles per user's prompt")
    parser.add_argument("--prompt-tokens", type=int, default=384)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    examples = writer_examples(
        args.dataset or Settings.load().dataset, tokenizer, args.users, args.profiles, args.prompt_tokens, args.seed
    )
    out = sft_on_profiles(args.base, examples, args.out, args.epochs, args.batch_size, args.lr, args.seed)
    (out / "lettingo_warmup.json").write_text(
        json.dumps(
            {
                **{k: str(v) for k, v in vars(args).items()},
                "examples": len(examples),
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
