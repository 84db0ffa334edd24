"""TRL's SFT then DPO on a tiny random Llama: a few steps, the checkpoint reloads, the outcome reports.

The model (2 layers of width 32, byte-level vocabulary) is built in memory, so every run takes
seconds and nothing is downloaded. The losses barely move in two steps; what is checked is the
plumbing: the phases ran on the rows given, the logs were kept, the weights changed and were
saved as one full model with the chat template.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

from magnet_dagster.training.data import TrainingRows, load_training_rows
from magnet_dagster.training.trainer import TrainingError, TrainingSettings, train_student
from tests.training.tiny_model import build_tiny_model, chat_template, write_export

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("trl")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model gains nothing from intra-op threads, and on a shared 2-core machine their
    spin-waits make each step ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> TrainingRows:
    return load_training_rows([write_export(tmp_path_factory.mktemp("exports") / "demo")])


def _settings(base: Path, **overrides) -> TrainingSettings:
    fields = {
        "sft_max_steps": 2,
        "dpo_max_steps": 2,
        "batch_size": 2,
        "max_length": 1024,
        "gradient_checkpointing": False,
        "sft_learning_rate": 1e-3,
        "dpo_learning_rate": 1e-3,
    }
    return TrainingSettings(base_model=base, **(fields | overrides))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_checkpoint(path: Path, base: Path) -> None:
    """A full model (no adapter files) that loads on its own, with the chat template, and trained weights."""
    assert not list(path.glob("adapter_*")), sorted(p.name for p in path.iterdir())
    trained, original = _weights(path), _weights(base)
    assert trained.keys() == original.keys()  # no LoRA parameter names left
    assert any(not torch.equal(trained[k], original[k]) for k in original)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template == chat_template()
    assert transformers.AutoConfig.from_pretrained(path).use_cache
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")], "staging left behind"


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sft_then_dpo_writes_a_full_checkpoint_and_reports_the_run(base, rows, tmp_path, lora):
    calls: list[tuple[str, int, int, float | None]] = []
    out = tmp_path / "checkpoints" / "student"
    outcome = train_student(_settings(base, lora=lora), rows, out, progress=lambda *a: calls.append(a))

    assert outcome.checkpoint == out
    _check_checkpoint(out, base)
    assert sorted(outcome.trajectory_ids) == ["t_math", "t_tickets"]  # the train split only
    assert sorted(outcome.pair_ids) == ["pair_math", "pair_tickets"]
    assert outcome.dpo is not None and outcome.dpo_skipped is None
    for phase in (outcome.sft, outcome.dpo):
        assert phase.steps == 2 and phase.rows == 2 and phase.rows_dropped == 0
        assert [p.step for p in phase.history] == [1, 2]
        assert all(p.loss > 0 for p in phase.history)
        assert phase.train_seconds > 0 and phase.seconds_per_step == phase.train_seconds / 2
        assert phase.wall_seconds >= phase.train_seconds
    assert all(p.rewards_margin is not None and p.rewards_accuracy is not None for p in outcome.dpo.history)
    assert outcome.dpo.history[0].loss == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    assert all(p.rewards_margin is None for p in outcome.sft.history)
    assert [(c[0], c[1], c[2]) for c in calls] == [("sft", 1, 2), ("sft", 2, 2), ("dpo", 1, 2), ("dpo", 2, 2)]
    summary = outcome.as_dict()
    assert summary["sft"]["seconds_per_step"] > 0 and summary["settings"]["base_model"] == str(base)


def test_without_preference_pairs_dpo_is_skipped_and_the_sft_model_is_the_checkpoint(base, rows, tmp_path):
    out = tmp_path / "student"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    sft_only = TrainingRows(rows.split, rows.sft, (), rows.files[:1])
    outcome = train_student(_settings(base, sft_max_steps=1), sft_only, out)
    assert outcome.dpo is None and outcome.pair_ids == ()
    assert outcome.dpo_skipped == "no preference pairs in the 'train' split"
    assert outcome.sft.steps == 1 and [p.step for p in outcome.sft.history] == [1]
    assert not (out / "stale.txt").exists()  # replaced as a whole
    _check_checkpoint(out, base)


def test_epochs_set_the_steps_when_no_maximum_is_given(base, rows, tmp_path):
    settings = _settings(base, sft_max_steps=None, sft_epochs=1, batch_size=1, dpo_max_steps=None, dpo_epochs=0.5)
    outcome = train_student(settings, rows, tmp_path / "student")
    assert outcome.sft.steps == 2  # 2 rows, one a step
    assert outcome.dpo is not None and outcome.dpo.steps == 1  # half of 2 pairs


def test_no_sft_rows_or_no_chat_template_is_a_clear_error(base, rows, tmp_path):
    with pytest.raises(TrainingError, match="no SFT rows in the 'train' split"):
        train_student(_settings(base), TrainingRows("train", (), rows.preference, rows.files), tmp_path / "a")
    bare = tmp_path / "bare"
    build_tiny_model(bare, template="")
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(TrainingError, match="no chat template"):
        train_student(_settings(bare), rows, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pairs_whose_prompt_fills_max_length_are_dropped_and_dpo_is_skipped_when_none_is_left(base, rows, tmp_path):
    """TRL drops a pair whose prompt alone reaches `max_length` (nothing of the turn would be left);
    the outcome counts them, and with none left the SFT model is the checkpoint."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)

    def length(messages, tools, **kwargs) -> int:
        return len(
            tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True, **kwargs)["input_ids"]
        )

    shortest_prompt = min(length(p.prompt, p.tools, add_generation_prompt=True) for p in rows.preference)
    first_answer = max(length(r.messages[:3], r.tools) for r in rows.sft)
    assert first_answer < shortest_prompt
    outcome = train_student(_settings(base, max_length=shortest_prompt, sft_max_steps=1), rows, tmp_path / "s")
    assert outcome.sft.rows == 2 and outcome.sft.steps == 1
    assert outcome.dpo is None and outcome.pair_ids == ()
    assert outcome.dpo_skipped == f"all 2 pairs have prompts of max_length ({shortest_prompt}) tokens or more"
    _check_checkpoint(tmp_path / "s", base)
