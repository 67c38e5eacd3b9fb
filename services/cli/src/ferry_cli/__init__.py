"""ferry: the command line of Ferry."""
