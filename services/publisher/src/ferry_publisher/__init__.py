"""ferry-publisher: tags tested trees as releases, exports them, serves them over rsync."""
