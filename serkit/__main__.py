from serkit.cli import main

raise SystemExit(main())
