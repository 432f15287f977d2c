from ebm_ppl.cli import main

raise SystemExit(main())
