"""What judges text: the Guard protocol, verdicts, policy and the guard pipeline."""
