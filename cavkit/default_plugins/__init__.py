"""Built-in plugins. Each module implements cavkit's hooks exactly as a third-party plugin would.

They register lazy ``"module:attr"`` references so that listing components imports no torch.
"""
