from raydl.cli import entry

entry()
