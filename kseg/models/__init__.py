"""Built-in architectures. Each module registers itself when imported.

Importing this package imports no network: the registry loads them through the
`kseg.models` entry points, like any plugin.
"""
