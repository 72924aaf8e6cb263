"""Reinforcement learning: DQN family (and later the actor-critic family)."""
