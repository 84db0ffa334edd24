"""Train the student on the exports: TRL's SFT, then turn-level DPO from the SFT weights.

The paper (Magnet, arXiv 2503.07826) fine-tunes on the positive trajectories, then runs
multi-turn DPO (mDPO) against the negative ones. Here both phases are TRL's own trainers
(`SFTTrainer`, `DPOTrainer`) with peft's LoRA optional; nothing in this module computes a loss.
The DPO reference is the SFT model: with LoRA, the DPO adapter sits on the merged SFT weights
and TRL gets the reference by switching the adapter off (no second copy); without it, a second
copy is loaded from the SFT weights (never from the base model, which is where TRL would look
for a policy passed as an object). The final model (LoRA merged in) and the tokenizer with its
chat template are written to `out_dir` in one rename.

CPU defaults: fp32 (`bf16=False`: TRL's configs turn bf16 on unless told), `use_cpu`, no
dataloader workers, no reporting, no checkpoints mid-way, a log line every step.
"""

from __future__ import annotations

import gc
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from magnet_dagster.training.data import PreferenceRow, SftRow, TrainingRows, preference_dataset, sft_dataset

SFT = "sft"
DPO = "dpo"

#: `progress(phase, step, total_steps, loss)`, called at every logged step
Progress = Callable[[str, int, int, float | None], None]

_GENERATION_TAG = re.compile(r"{%-?\s*generation\s*-?%}")
#: DPO metrics kept in the loss history, by TRL's log names
_DPO_METRICS = {
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/accuracies": "rewards_accuracy",
    "rewards/margins": "rewards_margin",
}


class TrainingError(RuntimeError):
    """Training cannot start or finish (no rows, no chat template, every row too long, ...)."""


@dataclass(frozen=True)
class TrainingSettings:
    """What to train from and how.

    Steps: a phase runs `*_max_steps` optimizer steps when set, else `*_epochs` passes over its
    rows (a fraction is allowed); one step is `batch_size * gradient_accumulation` rows.

    DPO loss: `dpo_loss_type="sigmoid"`, TRL's original DPO loss (Rafailov et al. 2023). The
    paper's multi-turn DPO sums the policy/reference log-ratio over the assistant turns of a
    trajectory, with the shared history as context. The exported pairs are turn-level: the
    prompt is the conversation up to the turn (user, assistant, tool messages) and chosen /
    rejected are that turn, so the two sides share all history and differ in one turn, and the
    multi-turn sum reduces to the log-ratio of that turn, which is the sigmoid loss over the
    completion tokens that TRL computes. Other TRL loss types (`ipo`, `sigmoid_norm` for a
    length-normalised ratio as in DMPO, `robust`, ...) are accepted as given.

    Learning rates default to TRL's own (SFT 2e-5, DPO 1e-6, for full fine-tuning); LoRA
    usually wants about ten times more. `assistant_only_loss=None` trains SFT on the assistant
    tokens only when the chat template marks them with `{% generation %}` (the project's does),
    else on the whole conversation. `gradient_checkpointing` (TRL's default) trades about a
    fifth more time for much less activation memory.
    """

    base_model: Path
    sft_epochs: float = 1.0
    sft_max_steps: int | None = None
    dpo_epochs: float = 1.0
    dpo_max_steps: int | None = None
    sft_learning_rate: float = 2e-5
    dpo_learning_rate: float = 1e-6
    dpo_beta: float = 0.1
    dpo_loss_type: str = "sigmoid"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | tuple[str, ...] = "all-linear"
    max_length: int = 1024
    batch_size: int = 2
    gradient_accumulation: int = 1
    gradient_checkpointing: bool = True
    assistant_only_loss: bool | None = None
    seed: int = 42
    use_cpu: bool = True
    bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_accumulation", "max_length", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainingSettings.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("sft_max_steps", "dpo_max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainingSettings.{name} must be at least 1 (or None for epochs), got {value}")
        for name in ("sft_epochs", "dpo_epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainingSettings.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class LogPoint:
    """One logged optimizer step; the reward fields are DPO's (implicit rewards: beta * log-ratio)."""

    step: int
    loss: float
    learning_rate: float | None = None
    rewards_chosen: float | None = None
    rewards_rejected: float | None = None
    rewards_accuracy: float | None = None
    rewards_margin: float | None = None


@dataclass(frozen=True)
class PhaseOutcome:
    """One phase: its rows (those that survived tokenising within `max_length`), steps, losses, times."""

    phase: str
    rows: int
    rows_dropped: int
    steps: int
    history: tuple[LogPoint, ...]
    wall_seconds: float  # the whole phase: loading, tokenising, training, saving
    train_seconds: float  # `trainer.train()` alone
    ids: tuple[str, ...]

    @property
    def seconds_per_step(self) -> float | None:
        return self.train_seconds / self.steps if self.steps else None

    @property
    def final_loss(self) -> float | None:
        return self.history[-1].loss if self.history else None


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training run did: per-phase losses and times, the checkpoint, and the rows that went in."""

    checkpoint: Path
    sft: PhaseOutcome
    dpo: PhaseOutcome | None
    dpo_skipped: str | None
    settings: TrainingSettings
    files: tuple[Path, ...] = field(default=())

    @property
    def trajectory_ids(self) -> tuple[str, ...]:
        return self.sft.ids

    @property
    def pair_ids(self) -> tuple[str, ...]:
        return self.dpo.ids if self.dpo else ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as text), with `seconds_per_step` per phase."""

        def phase(p: PhaseOutcome | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {**asdict(p), "seconds_per_step": p.seconds_per_step, "final_loss": p.final_loss}

        settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.settings).items()}
        return {
            "checkpoint": str(self.checkpoint),
            "sft": phase(self.sft),
            "dpo": phase(self.dpo),
            "dpo_skipped": self.dpo_skipped,
            "settings": settings,
            "files": [str(f) for f in self.files],
        }


def train_student(
    settings: TrainingSettings, rows: TrainingRows, out_dir: Path, progress: Progress | None = None
) -> TrainingOutcome:
    """SFT on `rows.sft`, then DPO on `rows.preference` from the SFT weights; the model in `out_dir`.

    No SFT rows is an error; no preference rows skips DPO (`dpo_skipped` says why), and the
    SFT model is the checkpoint. `out_dir` is replaced only once everything is written.
    """
    if not rows.sft:
        raise TrainingError(
            f"no SFT rows in the {rows.split!r} split of {', '.join(map(str, rows.files)) or 'nothing'}"
        )
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        tokenizer = _tokenizer(settings.base_model)
        sft_dir = staging / "sft"
        sft = _run_sft(settings, rows.sft, tokenizer, settings.base_model, sft_dir, staging, progress)
        final = sft_dir
        dpo: PhaseOutcome | None = None
        skipped: str | None = None
        if not rows.preference:
            skipped = f"no preference pairs in the {rows.split!r} split"
        else:
            gc.collect()  # the SFT trainer, its model and optimizer state hold reference cycles
            dpo_dir = staging / "dpo"
            dpo = _run_dpo(settings, rows.preference, tokenizer, sft_dir, dpo_dir, staging, progress)
            if dpo.rows == 0:
                skipped = (
                    f"all {dpo.rows_dropped} pairs have prompts of max_length ({settings.max_length}) tokens or more"
                )
                dpo = None
            else:
                final = dpo_dir
        _replace_dir(final, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return TrainingOutcome(out_dir, sft, dpo, skipped, settings, rows.files)


# --- phases ----------------------------------------------------------------------------------


def _run_sft(
    settings: TrainingSettings,
    rows: tuple[SftRow, ...],
    tokenizer: Any,
    model_path: Path,
    save_to: Path,
    staging: Path,
    progress: Progress | None,
) -> PhaseOutcome:
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    started = time.monotonic()
    set_seed(settings.seed)  # LoRA's initial weights are drawn before the Trainer seeds anything
    assistant_only = settings.assistant_only_loss
    has_tag = bool(_GENERATION_TAG.search(tokenizer.chat_template or ""))
    if assistant_only is None:
        assistant_only = has_tag
    elif assistant_only and not has_tag:
        raise TrainingError(
            f"assistant_only_loss needs a chat template that marks the assistant's part with "
            f"{{% generation %}}; the one in {settings.base_model} does not"
        )
    args = SFTConfig(
        output_dir=str(staging / "trainer-sft"),
        max_steps=_steps(len(rows), settings.sft_epochs, settings.sft_max_steps, settings),
        learning_rate=settings.sft_learning_rate,
        max_length=settings.max_length,
        assistant_only_loss=assistant_only,
        **_common_args(settings),
    )
    model = _load_model(model_path)
    dataset = sft_dataset(rows).shuffle(seed=settings.seed, buffer_size=len(rows))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora(settings),
        callbacks=_callbacks(SFT, progress),
    )
    _quiet(trainer, progress)
    kept = _kept_ids(trainer.train_dataset, "trajectory_id")
    if not kept:
        raise TrainingError(f"no SFT row has an assistant token within max_length ({settings.max_length})")
    args.max_steps = _steps(len(kept), settings.sft_epochs, settings.sft_max_steps, settings)
    return _train_and_save(trainer, SFT, kept, len(rows), tokenizer, save_to, started)


def _run_dpo(
    settings: TrainingSettings,
    rows: tuple[PreferenceRow, ...],
    tokenizer: Any,
    sft_path: Path,
    save_to: Path,
    staging: Path,
    progress: Progress | None,
) -> PhaseOutcome:
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    started = time.monotonic()
    set_seed(settings.seed)
    args = DPOConfig(
        output_dir=str(staging / "trainer-dpo"),
        max_steps=_steps(len(rows), settings.dpo_epochs, settings.dpo_max_steps, settings),
        learning_rate=settings.dpo_learning_rate,
        max_length=settings.max_length,
        beta=settings.dpo_beta,
        loss_type=[settings.dpo_loss_type],
        **_common_args(settings),
    )
    model = _load_model(sft_path)
    # the reference is the SFT model: adapters off with LoRA, else a copy of the SFT weights
    reference = None if settings.lora else _load_model(sft_path)
    dataset = preference_dataset(rows).shuffle(seed=settings.seed, buffer_size=len(rows))
    trainer = DPOTrainer(
        model=model,
        ref_model=reference,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=_lora(settings),
        callbacks=_callbacks(DPO, progress),
    )
    _quiet(trainer, progress)
    kept = _kept_ids(trainer.train_dataset, "pair_id")
    if not kept:
        return PhaseOutcome(DPO, 0, len(rows), 0, (), time.monotonic() - started, 0.0, ())
    args.max_steps = _steps(len(kept), settings.dpo_epochs, settings.dpo_max_steps, settings)
    return _train_and_save(trainer, DPO, kept, len(rows), tokenizer, save_to, started)


def _train_and_save(
    trainer: Any, phase: str, kept: list[str], total: int, tokenizer: Any, save_to: Path, started: float
) -> PhaseOutcome:
    t0 = time.monotonic()
    trainer.train()
    train_seconds = time.monotonic() - t0
    history = _history(trainer.state.log_history)
    steps = int(trainer.state.global_step)
    _save(trainer.model, tokenizer, save_to)
    return PhaseOutcome(
        phase, len(kept), total - len(kept), steps, history, time.monotonic() - started, train_seconds, tuple(kept)
    )


# --- helpers ---------------------------------------------------------------------------------


def _common_args(settings: TrainingSettings) -> dict[str, Any]:
    """TrainingArguments both phases share: the CPU defaults and no files or reports mid-way."""
    return {
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation,
        # transformers 5's name for gradient checkpointing (the old one is a deprecated alias)
        "activation_checkpointing": settings.gradient_checkpointing,
        "seed": settings.seed,
        "use_cpu": settings.use_cpu,
        "bf16": settings.bf16,
        "fp16": False,
        "dataloader_num_workers": 0,
        "report_to": "none",
        "save_strategy": "no",
        "logging_strategy": "steps",
        "logging_steps": 1,
        "disable_tqdm": True,
    }


def _steps(rows: int, epochs: float, max_steps: int | None, settings: TrainingSettings) -> int:
    """Optimizer steps: `max_steps`, else `epochs` passes of `rows` (the datasets are iterable, so
    the Trainer cannot count them itself)."""
    if max_steps is not None:
        return max_steps
    per_step = settings.batch_size * settings.gradient_accumulation
    return max(1, math.ceil(epochs * math.ceil(rows / per_step)))


def _tokenizer(base_model: Path) -> Any:
    from transformers import AutoTokenizer

    if not (Path(base_model) / "config.json").is_file():
        raise TrainingError(f"{base_model}: not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    if not tokenizer.chat_template:
        raise TrainingError(f"{base_model}: the tokenizer has no chat template; training needs a tool-aware one")
    return tokenizer


def _load_model(path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def _lora(settings: TrainingSettings) -> Any:
    if not settings.lora:
        return None
    from peft import LoraConfig

    targets = settings.lora_target_modules
    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )


def _callbacks(phase: str, progress: Progress | None) -> list[Any]:
    if progress is None:
        return []
    from transformers import TrainerCallback

    report = progress

    class _Progress(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs:
                report(phase, int(state.global_step), int(state.max_steps), float(logs["loss"]))

    return [_Progress()]


def _quiet(trainer: Any, progress: Progress | None) -> None:
    """With a `progress` callback, the caller reports the steps: drop the Trainer's own printing of
    every log dict to stdout (the Trainer adds it when tqdm is off)."""
    if progress is not None:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)


def _kept_ids(dataset: Any, key: str) -> list[str]:
    """The ids of the rows TRL kept after tokenising (it drops rows with nothing to learn within
    `max_length`); iterating the prepared iterable dataset tokenises them once more, cheaply."""
    return [example[key] for example in dataset]


def _history(log_history: list[dict[str, Any]]) -> tuple[LogPoint, ...]:
    points = []
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue  # the end-of-training summary has `train_loss`, not `loss`
        extra = {name: float(entry[key]) for key, name in _DPO_METRICS.items() if key in entry}
        lr = entry.get("learning_rate")
        points.append(
            LogPoint(int(entry["step"]), float(entry["loss"]), float(lr) if lr is not None else None, **extra)
        )
    return tuple(points)


def _save(model: Any, tokenizer: Any, directory: Path) -> None:
    """The full model (a LoRA adapter merged into its base) and the tokenizer with its chat template."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model.config.use_cache = True  # training turns the KV cache off; serving wants it
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))


def _replace_dir(source: Path, target: Path) -> None:
    """Move `source` to `target`, replacing an earlier `target` only after the move succeeded."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    try:
        os.replace(source, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
