"""What the intent model needs to know about its base transformer, found from the model itself.

- `check_base_folder`: a base-model folder holds weights and tokenizer files
  (or the error names what is missing), before anything is trained or written.
- `adapter_targets`: the modules LoRA and IA3 adapt, found from the model's
  own modules: its list of transformer blocks, and in the top blocks the
  Linear layers classified by role (query, key, value, attention output,
  feed-forward in and out). The feed-forward layers are found by shape
  (hidden -> wider, wider -> hidden); query, key and value by their names,
  which differ per family (BERT/MiniLM and RoBERTa/XLM-R: ``query``;
  DistilBERT: ``q_lin``; MPNet: ``q``; DeBERTa-v2: ``query_proj``); the
  attention output is the one other hidden -> hidden Linear of the block.
  A model where a role is missing or ambiguous gets an error naming its
  type and what was not found.
- `layer_runner`: how to run the embeddings and a slice of the blocks
  separately, so that training caches the frozen lower blocks' output and
  serving can start from it. BERT-style models (BERT, MiniLM, RoBERTa,
  XLM-R), DistilBERT and MPNet split this way; any other family (DeBERTa-v2,
  whose blocks share relative-position state) runs whole (`WholeModel`):
  every training step runs the frozen blocks too, slower, same result.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from core.encoder import ModelNotFoundError

# Names of the query, key and value projections, per family (the one part that is not structural).
ROLE_NAMES = {
    "query": ("query", "q_lin", "q", "query_proj", "q_proj"),
    "key": ("key", "k_lin", "k", "key_proj", "k_proj"),
    "value": ("value", "v_lin", "v", "value_proj", "v_proj"),
}
ROLES = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
LORA_ROLES = ROLES
IA3_ROLES = ("key", "value", "ffn_out")  # IA3 rescales keys, values and the feed-forward output's input
FAMILIES = "BERT/MiniLM, DistilBERT, RoBERTa/XLM-R, MPNet, DeBERTa-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json + merges.txt", "sentencepiece.bpe.model", "spm.model")


class UnsupportedBaseModelError(ValueError):
    """The base model's modules do not show where the adapters go."""


def check_base_folder(folder: str) -> None:
    """Raise `ModelNotFoundError` naming `folder` and what it lacks: weights, tokenizer files."""
    path = Path(folder)
    missing = []
    if not (any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))):
        missing.append(f"model weights ({' or '.join(WEIGHT_FILES)})")
    has_tokenizer = (
        (path / "tokenizer.json").exists()
        or (path / "vocab.txt").exists()
        or ((path / "vocab.json").exists() and (path / "merges.txt").exists())
        or any(path.glob("*.model"))  # sentencepiece: XLM-R, DeBERTa-v2, ...
    )
    if not has_tokenizer:
        missing.append(f"tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    if missing:
        raise ModelNotFoundError(f"base model folder '{folder}' has no {' and no '.join(missing)}")


def accepts_pooling_flag(config) -> bool:
    """Whether the AutoModel class for `config` takes ``add_pooling_layer`` (BERT, RoBERTa, ... do; DistilBERT does not)."""
    from transformers import AutoModel

    try:
        model_class = AutoModel._model_mapping[type(config)]
        return "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    except Exception:  # an unmapped config (or another transformers' mapping API): load it as it comes
        return False


def transformer_blocks(base) -> Tuple[str, "torch.nn.ModuleList"]:
    """(name, module) of `base`'s list of transformer blocks: the ModuleList with one entry per layer."""
    layers = getattr(base.config, "num_hidden_layers", None)
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and (layers is None or len(module) == layers):
            if all(any(isinstance(m, torch.nn.Linear) for m in block.modules()) for block in module):
                return name, module
    raise UnsupportedBaseModelError(
        f"base model type '{base.config.model_type}' has no list of {layers} transformer blocks "
        f"with Linear layers; supported families: {FAMILIES}"
    )


def block_roles(block, hidden: int, model_type: str, where: str) -> Dict[str, str]:
    """Role -> name (relative to `block`) of each Linear layer the adapters may target."""
    found: Dict[str, List[str]] = {role: [] for role in ROLES}
    square = []
    for name, module in block.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        named = [role for role, names in ROLE_NAMES.items() if leaf in names]
        if named:
            found[named[0]].append(name)
        elif module.in_features == hidden and module.out_features != hidden:
            found["ffn_in"].append(name)
        elif module.out_features == hidden and module.in_features != hidden:
            found["ffn_out"].append(name)
        elif module.in_features == module.out_features == hidden and "pos" not in leaf:
            square.append(name)  # DeBERTa's pos_key_proj/pos_query_proj are relative-position projections
    found["attention_output"] = square
    roles, problems = {}, []
    for role in ROLES:
        if len(found[role]) == 1:
            roles[role] = found[role][0]
        elif not found[role]:
            problems.append(f"no {role.replace('_', ' ')} layer")
        else:
            problems.append(f"{len(found[role])} candidates for the {role.replace('_', ' ')} ({', '.join(found[role])})")
    if problems:
        raise UnsupportedBaseModelError(
            f"cannot place adapters in base model type '{model_type}': in block '{where}' "
            f"found {'; '.join(problems)}; supported families: {FAMILIES}"
        )
    return roles


def adapter_targets(base, trainable_layers: int, adapter: str) -> Tuple[List[str], Optional[List[str]]]:
    """(target module names, IA3 feed-forward module names or None) for the top `trainable_layers` blocks."""
    prefix, blocks = transformer_blocks(base)
    hidden = base.config.hidden_size
    wanted = LORA_ROLES if adapter == "lora" else IA3_ROLES
    targets, feedforward = [], []
    for index in range(max(0, len(blocks) - trainable_layers), len(blocks)):
        where = f"{prefix}.{index}"
        roles = block_roles(blocks[index], hidden, base.config.model_type, where)
        targets += [f"{where}.{roles[role]}" for role in wanted]
        feedforward.append(f"{where}.{roles['ffn_out']}")
    return targets, (None if adapter == "lora" else feedforward)


# ------------------------------------------------------------------ running the layers
class LayerRunner:
    """Runs one family's embeddings and a slice of its blocks (`split`), or the whole model."""

    split = True

    def embed(self, base, ids):
        raise NotImplementedError

    def layer_inputs(self, base, hidden, mask) -> tuple:
        """What each block takes after the hidden states (the family's attention mask, position bias...)."""
        raise NotImplementedError

    def run(self, base, hidden, mask, start: int, stop: Optional[int] = None):
        """Blocks `start` to `stop` of `base` on `hidden`: the hidden states they give."""
        inputs = self.layer_inputs(base, hidden, mask)
        for layer in self.blocks(base)[start:stop]:
            hidden = layer(hidden, *inputs)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        return hidden

    def blocks(self, base):
        raise NotImplementedError

    def encode(self, base, ids, mask):
        """The last layer's hidden states of `ids`."""
        return self.run(base, self.embed(base, ids), mask, 0)


class BertLayers(LayerRunner):
    """BERT, MiniLM, RoBERTa, XLM-R (and other BERT-derived models with `encoder.layer`)."""

    def __init__(self, base) -> None:
        self.token_types = hasattr(base.embeddings, "token_type_embeddings")

    def blocks(self, base):
        return base.encoder.layer

    def embed(self, base, ids):
        if self.token_types:
            return base.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
        return base.embeddings(input_ids=ids)

    def layer_inputs(self, base, hidden, mask) -> tuple:
        extended, _ = base._create_attention_masks(
            attention_mask=mask,
            encoder_attention_mask=None,
            embedding_output=hidden,
            encoder_hidden_states=None,
            cache_position=torch.arange(mask.shape[1], device=mask.device),
            past_key_values=None,
        )
        return (extended,)


class DistilBertLayers(LayerRunner):
    """DistilBERT: `embeddings`, `transformer.layer`, no token types."""

    def blocks(self, base):
        return base.transformer.layer

    def embed(self, base, ids):
        return base.embeddings(ids)

    def layer_inputs(self, base, hidden, mask) -> tuple:
        from transformers.masking_utils import create_bidirectional_mask

        return (create_bidirectional_mask(config=base.config, inputs_embeds=hidden, attention_mask=mask),)


class MPNetLayers(LayerRunner):
    """MPNet: each block takes the encoder's relative position bias, computed from the sequence length."""

    def blocks(self, base):
        return base.encoder.layer

    def embed(self, base, ids):
        return base.embeddings(input_ids=ids)

    def layer_inputs(self, base, hidden, mask) -> tuple:
        return base.get_extended_attention_mask(mask, tuple(mask.shape)), base.encoder.compute_position_bias(hidden)


class WholeModel(LayerRunner):
    """Any other family (DeBERTa-v2, ...): the model's own forward, no split into frozen and tuned blocks."""

    split = False

    def blocks(self, base):
        return transformer_blocks(base)[1]

    def encode(self, base, ids, mask):
        return base(input_ids=ids, attention_mask=mask).last_hidden_state


def layer_runner(base) -> LayerRunner:
    """The runner for `base`'s family, told apart by its modules (not its name)."""
    encoder = getattr(base, "encoder", None)
    if hasattr(base, "_create_attention_masks") and hasattr(base, "embeddings") and hasattr(encoder, "layer"):
        return BertLayers(base)
    if base.config.model_type == "distilbert" and hasattr(getattr(base, "transformer", None), "layer"):
        return DistilBertLayers()
    if hasattr(encoder, "compute_position_bias") and hasattr(encoder, "layer") and hasattr(base, "get_extended_attention_mask"):
        return MPNetLayers()
    return WholeModel()
