"""An exact shortcut through the BiLSTM's front padding (``bilstm_toxicity``'s network).

Every row the model sees is padded at the front to 100 ids with id 0, whose embedding is an ordinary,
non-zero vector (the Keras original has no mask), and both LSTM directions' outputs at every step,
padding included, enter the max pool. Trimming the padding therefore changes the scores. What is exact:

- **Forward direction.** It starts from a zero state and reads the same padding vector ``p`` times
  before the text, so its state after ``p`` padding steps, and the running max of its outputs over
  them, are the same for every text. They are computed once at load for ``p`` = 0..100; a row then
  runs the forward LSTM over its own tokens only, from the state for its ``p``, and its forward pool
  is the larger of the stored padding max and the max over its tokens' outputs.
- **Backward direction.** It reads the text (reversed) first and the padding last, so its padding
  steps depend on the text and run in full, over the whole 100-id row. An early stop at a fixed point
  was checked and rejected: fed the padding vector, the backward state does not reach a float32 fixed
  point within 100 steps (its cell state still drifts by about 1e-2 after 100 steps, from random
  states and from real texts' states), so stopping early would be an approximation.

So a window of ``n`` known words costs ``100 + n`` LSTM steps instead of 200. Rows of different
lengths share one call: each row starts from its own initial state, runs as many steps as the
longest, and its steps past its end are masked out of its max. Rows of more than ``shortcut_max``
ids (default 50) run the plain network instead: there the saving is smaller than the cost of a
second LSTM call. Scores match ``BiLstmToxicity.score_sequences`` to float rounding (at most 1.8e-7
measured; the unit tests hold them to 1e-6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    import torch
    from torch import nn

PAD_ID = 0


class PaddingShortcut:
    """Scores rows of at most ``maxlen`` ids, each as if padded at the front to ``maxlen`` with
    ``PAD_ID``, with the forward direction's padding steps read from a table built at load."""

    def __init__(self, network: nn.Module, maxlen: int, shortcut_max: int | None = None) -> None:
        self.network = network
        self.maxlen = maxlen
        # Rows of more ids than this run the plain network (see ``score``).
        self.shortcut_max = maxlen // 2 if shortcut_max is None else shortcut_max
        self.embedding = cast("nn.Embedding", network.embedding)
        self.hidden = cast("nn.Linear", network.hidden)
        self.out = cast("nn.Linear", network.out)
        lstm = cast("nn.LSTM", network.lstm)
        self.forward_lstm = _one_direction(lstm, "")
        self.backward_lstm = _one_direction(lstm, "_reverse")
        self.device = self.embedding.weight.device
        self.pad_h, self.pad_c, self.pad_max = self._padding_table()

    def _padding_table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row ``p``: the forward state after ``p`` padding steps and the running max of its outputs
        (``-inf`` for ``p`` = 0, so it never wins the max)."""
        import torch

        units = self.forward_lstm.hidden_size
        with torch.inference_mode():
            pad = self.embedding(torch.tensor([[PAD_ID]], device=self.device))  # (1, 1, dim)
            h = torch.zeros(1, 1, units, device=self.device)
            c = torch.zeros(1, 1, units, device=self.device)
            running = torch.full((units,), float("-inf"), device=self.device)
            hs, cs, maxes = [h[0, 0]], [c[0, 0]], [running]
            for _ in range(self.maxlen):
                output, (h, c) = self.forward_lstm(pad, (h, c))
                running = torch.maximum(running, output[0, 0])
                hs.append(h[0, 0])
                cs.append(c[0, 0])
                maxes.append(running)
            return torch.stack(hs), torch.stack(cs), torch.stack(maxes)

    def score(self, sequences: list[list[int]]) -> torch.Tensor:
        """The six sigmoid outputs, one row per sequence (each at most ``maxlen`` ids)."""
        import torch

        if any(len(sequence) > self.maxlen for sequence in sequences):
            raise ValueError(f"a sequence longer than {self.maxlen} ids: cut it into windows first")
        short = [row for row, sequence in enumerate(sequences) if len(sequence) <= self.shortcut_max]
        with torch.inference_mode():
            if not sequences:
                return torch.empty((0, self.out.out_features), device=self.device)
            if len(short) == len(sequences):
                return self._score_short(sequences)
            # Rows with little padding to skip run the plain network: the shortcut's two LSTM calls
            # cost about as much as its one when a row is mostly text (measured break-even: 60-100 ids).
            full = [row for row, sequence in enumerate(sequences) if len(sequence) > self.shortcut_max]
            rows = [[PAD_ID] * (self.maxlen - len(sequences[row])) + sequences[row] for row in full]
            scores: torch.Tensor = self.network(torch.tensor(rows, dtype=torch.long, device=self.device))
            if not short:
                return scores
            merged = scores.new_empty((len(sequences), scores.shape[1]))
            merged[full] = scores
            merged[short] = self._score_short([sequences[row] for row in short])
            return merged

    def _score_short(self, sequences: list[list[int]]) -> torch.Tensor:
        import torch

        lengths = [len(sequence) for sequence in sequences]
        longest = max(lengths)
        # One id tensor and one embedding lookup for both directions (a lone window's fixed costs
        # are most of its time): each row reversed and padded, as the backward direction reads it,
        # then its own ids (padded at the end to the longest) for the forward direction.
        rows = [
            sequence[::-1] + [PAD_ID] * (self.maxlen - n) + sequence + [PAD_ID] * (longest - n)
            for sequence, n in zip(sequences, lengths, strict=True)
        ]
        # Time-major (step, row, unit): the LSTM's own layout, so no transposed copies, and the max
        # over steps reads contiguous memory.
        ids = torch.tensor(rows, dtype=torch.long, device=self.device).t()
        inputs = self.embedding(ids)
        backward_steps, _ = self.backward_lstm(inputs[: self.maxlen])
        backward = backward_steps.amax(dim=0)
        forward = self._forward_pool(inputs[self.maxlen :], lengths)
        pooled = torch.cat([forward, backward], dim=1)
        scores: torch.Tensor = torch.sigmoid(self.out(torch.relu(self.hidden(pooled))))
        return scores

    def _forward_pool(self, inputs: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """The stored padding max, raised by the forward outputs over each row's own ids
        (``inputs``: their embeddings, time-major, each row left-aligned and padded at the end)."""
        import torch

        batch, longest = len(lengths), inputs.shape[0]
        if min(lengths) == longest:  # one length (a lone window): no masking, no indexing
            pad = self.maxlen - longest
            pooled = self.pad_max[pad].expand(batch, -1)
            if longest == 0:  # empty texts are padding only
                return pooled
            shape = (1, batch, self.pad_h.shape[1])
            state = (self.pad_h[pad].expand(shape).contiguous(), self.pad_c[pad].expand(shape).contiguous())
            outputs, _ = self.forward_lstm(inputs, state)
            return torch.maximum(pooled, outputs.amax(dim=0))
        # Rows of different lengths: every row runs ``longest`` steps from its own state, and the
        # steps past a row's end (reading filler after its text) are masked out of its max. Masking
        # is exact: a step's output depends only on the steps before it.
        pads = torch.tensor([self.maxlen - n for n in lengths], dtype=torch.long, device=self.device)
        state = (self.pad_h[pads].unsqueeze(0), self.pad_c[pads].unsqueeze(0))
        outputs, _ = self.forward_lstm(inputs, state)
        steps = torch.arange(longest, device=self.device)
        past_end = steps.unsqueeze(1) >= (self.maxlen - pads).unsqueeze(0)  # (longest, batch)
        outputs = outputs.masked_fill(past_end.unsqueeze(2), float("-inf"))
        return torch.maximum(self.pad_max[pads], outputs.amax(dim=0))


def _one_direction(lstm: nn.LSTM, suffix: str) -> nn.LSTM:
    """A one-direction ``nn.LSTM`` holding one direction's weights of a bidirectional one."""
    from torch import nn

    weight = cast("torch.Tensor", lstm.weight_ih_l0)
    single = nn.LSTM(lstm.input_size, lstm.hidden_size)  # time-major
    state = {
        name: getattr(lstm, f"{name}{suffix}").detach().clone()
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    }
    single.load_state_dict(state, strict=True)
    single.requires_grad_(False)
    return single.to(device=weight.device, dtype=weight.dtype).eval()
