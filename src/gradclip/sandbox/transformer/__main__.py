from gradclip.sandbox.transformer.cli import main

raise SystemExit(main())
