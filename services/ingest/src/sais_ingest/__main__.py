import asyncio

from .app import build_app

asyncio.run(build_app().run())
