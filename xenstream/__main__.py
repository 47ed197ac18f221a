from xenstream.cli import main

raise SystemExit(main())
