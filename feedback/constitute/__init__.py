"""Constitutional AI offline (``hhh feedback constitute``): over red-team prompts or recorded ones, ask a
model for an answer, have a critic critique and revise it against principles sampled from a
constitution, optionally have the critic rank the answer against its revision (RL-CAI's labelling step),
and write what that teaches: an SFT dataset of revisions and a preference dataset of revision over answer.

Modules, in the order a prompt meets them:

- ``prompts``: the prompts, from a JSON-lines file or from the recorded traffic in Redis;
- ``critic``: the calls to any OpenAI-compatible server (answer, critique, revision, ranking), and the
  reading of a ranking's first-token log probabilities;
- ``state``: the run's state file, which makes a rerun skip what is done;
- ``run``: one prompt end to end, and many at once with bounded concurrency;
- ``output``: the datasets and their card.

Errors: a prompt that fails (the server refused, timed out, answered nothing) is ``PromptFailed``; it is
counted and logged, never fatal, and a rerun tries it again. A wrong option is ``ValueError`` naming it.
"""
