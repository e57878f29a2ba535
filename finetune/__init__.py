"""The tuning loop: exchange records -> preference pairs -> DPO (TRL + LoRA) -> eval gates -> registry.

`finetune.cycle` reads top to bottom like the recipe; each step is also a `guard` command (`finetune.cli`).
"""
