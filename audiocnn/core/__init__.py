"""The base layer every other module may import: errors, atomic files, checkpoints, the registry, runtime settings.

It imports nothing else of audiocnn.
"""
