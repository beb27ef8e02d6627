"""What an application's users said (``POST /v1/feedback``) becomes pairs where it implies a preference:

- a preferred choice among the n choices of one completion beats each of the others;
- within one prompt's answers (the original and its sampled candidates), an answer rated up beats an
  answer rated down. A rating of a completion with several choices and no preferred choice does not say
  which choice it is about, so it gives nothing. Several users' ratings of one answer are summed.
"""

from __future__ import annotations

from collections import defaultdict

from feedback.events import FeedbackEvent
from feedback.preferences.pairs import Comparison
from feedback.ranking import RankingTask


def feedback_comparisons(task: RankingTask, rated: list[tuple[FeedbackEvent, str]]) -> list[Comparison]:
    """``rated``: the feedback on this task's prompt, each with the event id of the completion it rates."""
    ids = {c.id for c in task.candidates}
    pairs: list[Comparison] = []
    score: dict[str, int] = defaultdict(int)
    for feedback, event_id in rated:
        choices = sorted(i for i in ids if i.rpartition(":")[0] == event_id)
        who = feedback.user or "user"
        if feedback.preferred_choice is not None:
            preferred = f"{event_id}:{feedback.preferred_choice}"
            if preferred in ids:
                pairs += [Comparison(preferred, other, 1.0, who, "preferred_choice")
                          for other in choices if other != preferred]  # fmt: skip
        if feedback.rating is None:
            continue
        if feedback.preferred_choice is not None:
            target = f"{event_id}:{feedback.preferred_choice}"
        elif len(choices) == 1:
            target = choices[0]
        else:
            continue  # which of the choices? unknown
        if target in ids:
            score[target] += 1 if feedback.rating == "up" else -1
    liked = sorted(i for i, s in score.items() if s > 0)
    disliked = sorted(i for i, s in score.items() if s < 0)
    pairs += [Comparison(up, down, 1.0, None, "thumbs") for up in liked for down in disliked]
    return pairs
